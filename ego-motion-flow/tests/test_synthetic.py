"""The synthetic road generator: determinism, exactness of its ground truth (a hand-computed wall, photometric
consistency along the flow, rigid vs full flow), and the round trip through the KITTI 2015 and Virtual KITTI 2
loaders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ego_motion_flow.data.kitti15 import Kitti2015
from ego_motion_flow.data.synthetic import (
    CLASSES,
    GROUND_Y,
    KITTI_BASELINE,
    SKY_DEPTH,
    Body,
    Road,
    Scene,
    generate_sequence,
    intrinsics,
    render_sequence,
    write_synthetic,
)
from ego_motion_flow.data.vkitti2 import VirtualKitti2

SKY = CLASSES.index("Sky")


@pytest.fixture(scope="module")
def sequence() -> dict[str, np.ndarray]:
    return generate_sequence(np.random.default_rng(3), 64, 192, 8)


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image sampled (bilinearly) at p + flow(p)."""
    height, width = flow.shape[:2]
    x = (np.arange(width)[None] + flow[..., 0]).astype(np.float32)
    y = (np.arange(height)[:, None] + flow[..., 1]).astype(np.float32)
    return cv2.remap(image.astype(np.float32), x, y, cv2.INTER_LINEAR)


def test_same_seed_same_sequence_other_seed_other_sequence():
    a = generate_sequence(np.random.default_rng(7), 32, 96, 3)
    b = generate_sequence(np.random.default_rng(7), 32, 96, 3)
    c = generate_sequence(np.random.default_rng(8), 32, 96, 3)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["image"], c["image"])


def test_shapes_and_scene_statistics(sequence):
    frames, height, width = sequence["depth"].shape
    assert sequence["image"].shape == (frames, height, width, 3) and sequence["flow"].shape == (frames - 1, height,
                                                                                                 width, 2)
    assert sequence["image"].min() >= 0 and sequence["image"].max() <= 1
    assert 0.01 < sequence["moving"].mean() < 0.4  # some, not most, pixels are moving cars
    assert 0.02 < (sequence["class_id"] == SKY).mean() < 0.6
    assert sequence["track_moving"].shape == (frames, sequence["track_size"].shape[0])


def test_depth_positive_and_sky_far(sequence):
    sky = sequence["class_id"] == SKY
    depth = sequence["depth"]
    assert np.all(np.isfinite(depth))
    assert np.all(depth[~sky] > 0.1) and np.all(depth[~sky] < 401)
    np.testing.assert_array_equal(depth[sky], np.float32(SKY_DEPTH))
    assert not sequence["flow_valid"][sky[:-1]].any() and not sequence["rigid_valid"][sky[:-1]].any()
    assert np.all(sequence["instance"][sky] == 0)


def test_rigid_flow_equals_flow_on_static_pixels_and_not_on_moving_cars(sequence):
    flow, rigid = sequence["flow"], sequence["rigid_flow"]
    both = sequence["flow_valid"] & sequence["rigid_valid"]
    static = both & ~sequence["moving"][:-1]
    moving = both & sequence["moving"][:-1]
    assert static.mean() > 0.5 and moving.sum() > 100
    np.testing.assert_allclose(flow[static], rigid[static], atol=1e-4)
    difference = np.linalg.norm(flow - rigid, axis=-1)
    assert np.median(difference[moving]) > 1.0
    for k in range(len(flow)):  # every moving car in view, even a far one, differs from the static world
        for track in np.unique(sequence["instance"][k][moving[k]]):
            assert difference[k][moving[k] & (sequence["instance"][k] == track)].mean() > 0.05


def test_flow_carries_frame_t_onto_frame_t_plus_1(sequence):
    """Frame t+1 sampled at p + flow matches frame t at p on non-occluded pixels (textures are faded below
    their aliasing limit, so the residual is interpolation and object edges); a zero flow does not."""
    errors, zero_errors = [], []
    for k in range(len(sequence["flow"])):
        noc = sequence["flow_noc"][k]
        warped = _warp(sequence["image"][k + 1], sequence["flow"][k])
        errors.append(np.abs(warped - sequence["image"][k]).mean(axis=-1)[noc])
        zero_errors.append(np.abs(sequence["image"][k + 1] - sequence["image"][k]).mean(axis=-1)[noc])
    errors, zero_errors = np.concatenate(errors), np.concatenate(zero_errors)
    assert np.median(errors) < 0.01 and errors.mean() < 0.03 and np.percentile(errors, 90) < 0.06
    assert zero_errors.mean() > 2 * errors.mean()


def test_occluded_points_are_behind_what_frame_t_plus_1_sees(sequence):
    """flow_noc drops points that leave the image or that something covers at t+1: there the depth rendered
    at t+1 (nearest pixel) is mostly smaller than the point's own depth at t+1."""
    k = 2
    height, width = sequence["depth"].shape[1:]
    flow, valid, noc = sequence["flow"][k], sequence["flow_valid"][k], sequence["flow_noc"][k]
    target = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1) + flow
    inside = (target[..., 0] >= 0) & (target[..., 0] <= width - 1) & (target[..., 1] >= 0) & (
        target[..., 1] <= height - 1)
    assert np.all(inside[noc]) and np.all(valid[noc])
    occluded = valid & inside & ~noc
    assert occluded.sum() > 20
    col, row = np.rint(target[occluded]).astype(int).T
    seen = sequence["depth"][k + 1][row, col]
    assert np.mean(seen < 0.98 * sequence["depth_next"][k][occluded]) > 0.7


def test_translation_past_a_wall_gives_flow_f_t_over_z():
    """Camera moving 0.3 m to the right in front of a fronto-parallel wall at Z = 5 m: u' = u - f t / Z."""
    height, width, Z, t = 32, 96, 5.0, 0.3
    K = intrinsics(height, width, 1.3, -0.7)
    wall = np.array([[[-60.0, -60.0, Z], [60.0, GROUND_Y, Z + 1.0]]])
    body = Body(wall, ("facade",), (CLASSES.index("Building"),), np.repeat(np.eye(4)[None], 3, axis=0),
                np.array([0.6, 0.5, 0.4]), seed=1)
    cameras = np.repeat(np.eye(4)[None], 2, axis=0)
    cameras[1, 0, 3] = t
    road = Road(kappa=1e-4, lane_width=3.5, lanes=1, parking=0.0, pavement=3.0)
    out = render_sequence(Scene(road, [body], cameras, K, [], seed=0), height, width)
    np.testing.assert_allclose(out["depth"], Z, rtol=1e-6)
    np.testing.assert_allclose(out["flow"][0, ..., 0], -K[0, 0] * t / Z, atol=1e-4)
    np.testing.assert_allclose(out["flow"][0, ..., 1], 0.0, atol=1e-4)
    np.testing.assert_allclose(out["rigid_flow"], out["flow"], atol=1e-6)
    assert out["flow_valid"].all() and not out["moving"].any()
    np.testing.assert_array_equal(out["flow_noc"][0], np.arange(width)[None].repeat(height, 0) >= K[0, 0] * t / Z)


def test_written_datasets_read_back_with_the_loaders(tmp_path):
    frames, height, width = 4, 32, 96
    root = write_synthetic(tmp_path, 2, height=height, width=width, frames=frames, seed=5)
    truth = [generate_sequence(np.random.default_rng(stream), height, width, frames)
             for stream in np.random.SeedSequence(5).spawn(2)]
    vkitti = VirtualKitti2(root / "vkitti2", scenes=["Scene01", "Scene02"], variations=["clone"])
    assert len(vkitti) == 2 * (frames - 1)
    vkitti_step = 2 * (np.array([width, height]) - 1) / 65535  # the png's flow quantisation
    for i in range(len(vkitti)):
        sample, data, k = vkitti[i], truth[i // (frames - 1)], i % (frames - 1)
        assert sample["frame"] == k
        valid = data["flow_valid"][k]
        np.testing.assert_array_equal(sample["flow_valid"].numpy(), valid)
        error = np.abs(sample["flow"].numpy().transpose(1, 2, 0) - data["flow"][k])[valid]
        assert np.all(error <= vkitti_step / 2 + 1e-4)
        sky = data["class_id"][k] == SKY
        depth = sample["depth"].numpy()
        assert np.all(depth[sky] == 0) and np.all(np.abs(depth - data["depth"][k])[~sky] <= 0.0051)
        np.testing.assert_array_equal(sample["moving"].numpy(), data["moving"][k])
        assert sample["moving_valid"].all()
        np.testing.assert_allclose(sample["K"].numpy(), data["K"], rtol=1e-6)
        T_21 = np.linalg.inv(data["camera_to_world"][k + 1]) @ data["camera_to_world"][k]
        np.testing.assert_allclose(sample["T_21"].numpy(), T_21, atol=1e-5)
        assert np.abs(sample["image1"].numpy().transpose(1, 2, 0) - data["image"][k]).mean() < 0.02  # jpg 95
        rigid = sample["rigid_valid"].numpy() & data["rigid_valid"][k]
        assert rigid.mean() > 0.5
        rigid_flow = sample["rigid_flow"].numpy().transpose(1, 2, 0)[rigid]  # from the png's centimetres:
        np.testing.assert_allclose(rigid_flow, data["rigid_flow"][k][rigid], rtol=0.01, atol=0.05)  # 5 mm / z
    kitti = Kitti2015(root / "kitti15")
    assert len(kitti) == 2
    for i, data in enumerate(truth):
        sample, k = kitti[i], frames - 2  # sequences shorter than KITTI_FRAME + 2 give their last pair
        valid = data["flow_valid"][k]
        np.testing.assert_array_equal(sample["flow_valid"].numpy(), valid)
        error = np.abs(sample["flow"].numpy().transpose(1, 2, 0) - data["flow"][k])[valid]
        assert np.all(error <= 1 / 128 + 1e-4)
        np.testing.assert_array_equal(sample["moving"].numpy()[valid], data["moving"][k][valid])
        # Depth from disparity: 1/256 px steps of f B / z, so compare disparities.
        sky = data["class_id"][k] == SKY
        depth = sample["depth"].numpy()
        assert np.all(depth[sky] == 0) and np.all(depth[~sky] > 0)
        f_b = data["K"][0, 0] * KITTI_BASELINE
        assert np.all(np.abs(f_b / depth[~sky] - f_b / data["depth"][k][~sky]) <= 1 / 512 + 1e-5)
        # KITTI ships no poses: the loader fits T_21 to the static flow and disparity; it must find ours.
        T_21 = np.linalg.inv(data["camera_to_world"][k + 1]) @ data["camera_to_world"][k]
        assert sample["has_pose"]
        np.testing.assert_allclose(sample["T_21"].numpy(), T_21, atol=0.02)
