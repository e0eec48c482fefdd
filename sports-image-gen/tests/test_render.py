"""The procedural broadcast renderer: its camera distribution, ray casting, drawing, labels and written split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sports_image_gen.data import render as render_module
from sports_image_gen.data.camera import Camera, grid_points
from sports_image_gen.data.gamestate import read_gamestate
from sports_image_gen.data.pitch import pitch_polylines
from sports_image_gen.data.render import (
    look_at,
    project,
    render,
    sample_camera,
    sample_scene,
    view_target,
    write_split,
)
from sports_image_gen.data.skeleton import COCO_KEYPOINTS, COCO_SKELETON
from sports_image_gen.data.soccernet_calibration import read_calibration_split
from sports_image_gen.data.tracking import Layout

WIDTH, HEIGHT = 320, 180


def sampled(seed: int):
    rng = np.random.default_rng(seed)
    camera = sample_camera(rng)
    return camera, sample_scene(rng, camera)


def test_camera_json_round_trip_gives_the_same_projection():
    for seed in range(5):
        camera, _ = sampled(seed)
        again = Camera.from_json_parameters(json.loads(json.dumps(camera.to_json_parameters())))
        uv, front = camera.project(grid_points())
        uv_again, front_again = again.project(grid_points())
        assert (front == front_again).all()
        assert np.abs(uv[front] - uv_again[front]).max() < 1e-6


def test_sampled_camera_aims_at_its_target():
    """The look-at rotation, once written as pan / tilt / roll, still puts the target at the principal point
    (distortion is zero on the axis), from the side of the main camera, upright."""
    rng = np.random.default_rng(0)
    for target in ([0.0, 0.0], [-35.0, 15.0], [30.0, -12.0]):
        camera = sample_camera(rng, np.array(target))
        uv, front = camera.project(np.array([[*target, 0.0]]))
        assert front[0] and np.abs(uv[0] - camera.principal_point).max() < 1e-6
        assert np.abs(view_target(camera) - target).max() < 1e-6
        assert camera.position_meters[1] >= 45 and -20 <= camera.position_meters[2] <= -10
        # Upright: a point 2 m above the target is above it in the image (z points down).
        up, _ = camera.project(np.array([[*target, -2.0]]))
        assert up[0, 1] < uv[0, 1]
    rotation = look_at(np.array([0.0, 50.0, -15.0]), np.zeros(3), roll_degrees=0.0)
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)


def test_median_camera_sees_at_least_15_grid_points():
    rng = np.random.default_rng(0)
    counts = [sample_camera(rng).project_grid()[1].sum() for _ in range(50)]
    assert np.median(counts) >= 15


def test_pixel_rays_hit_the_ground_where_the_camera_projects_them():
    """The background's rays (undistorted on a lattice, interpolated) against the exact forward model: each
    ground hit projects back onto its pixel's centre, with strong distortion."""
    camera, _ = sampled(1)
    camera.radial_distortion = np.array([0.05, -0.02, 0.0, 0.0, 0.0, 0.0])
    camera.tangential_distortion = np.array([1e-3, -1e-3])
    big = camera.scale_to(WIDTH * 2, HEIGHT * 2)
    lattice = render_module._lattice(big, WIDTH * 2, HEIGHT * 2, 8)
    rays = np.stack([render_module._upsample(lattice[..., i], WIDTH * 2, HEIGHT * 2, 8) for i in range(3)], 1)
    down = rays[:, 2] > 1e-3
    ground = big.centre - (big.centre[2] / rays[down, 2])[:, None] * rays[down]
    uv, front = big.project(ground)
    v, u = np.divmod(np.flatnonzero(down), WIDTH * 2)
    assert front.all() and down.mean() > 0.3
    assert np.abs(uv - np.stack([u + 0.5, v + 0.5], 1)).max() < 0.02


def test_rendering_is_deterministic_and_well_formed():
    camera, scene = sampled(2)
    frame = render(camera, scene, WIDTH, HEIGHT)
    again = render(*sampled(2), WIDTH, HEIGHT)
    assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
    assert np.array_equal(frame.image, again.image)
    assert np.array_equal(frame.keypoints, again.keypoints, equal_nan=True)
    n = len(scene.team)
    assert scene.joints.shape == (n, 17, 3) and frame.boxes.shape == (n, 4) and frame.keypoints.shape == (n, 17, 3)
    assert (np.bincount(scene.team) == [11, 11, 1]).all()
    assert set(np.unique(frame.keypoints[..., 2])) <= {0.0, 1.0, 2.0}
    assert not np.array_equal(frame.image, render(*sampled(3), WIDTH, HEIGHT).image)


def test_teams_wear_distinct_kits_and_the_prompt_names_them():
    for seed in range(20):
        _, scene = sampled(seed)
        left, right = (scene.colours[(scene.team == side) & ~scene.goalkeeper][0].astype(float) for side in (0, 1))
        assert np.linalg.norm(left - right) >= render_module.MIN_KIT_DISTANCE
        names = {tuple(colour): name for name, colour in render_module.KIT_COLOURS.items()}
        assert f"{names[tuple(left)]} team against {names[tuple(right)]} team" in scene.prompt
        assert render_module.WEATHERS[scene.weather].phrase in scene.prompt


def test_markings_are_white_where_they_project():
    """Wherever the centre circle and halfway line project, the frame is much brighter than the grass 4 pixels
    away (players excluded)."""
    rng = np.random.default_rng(4)
    camera = sample_camera(rng, np.array([0.0, 0.0]))
    camera.x_focal_length = camera.y_focal_length = 1000.0  # a 51 degree view of the centre circle
    scene = sample_scene(rng, camera)
    frame = render(camera, scene, WIDTH, HEIGHT)
    grey = frame.image.min(2).astype(float)  # white has all channels high, grass a low red and blue
    lines = pitch_polylines(0.25)
    points = np.concatenate([lines["Circle central"], lines["Middle line"]])
    uv, valid = project(camera.scale_to(WIDTH, HEIGHT), points)
    u, v = np.floor(uv[valid]).astype(int).T
    inside = (u >= 4) & (u < WIDTH - 4) & (v >= 4) & (v < HEIGHT - 4)
    clear = np.ones(len(u), bool)
    for x1, y1, x2, y2 in frame.boxes:
        clear &= ~((u >= x1 - 1) & (u <= x2 + 1) & (v >= y1 - 1) & (v <= y2 + 1))
    u, v = u[inside & clear], v[inside & clear]
    assert len(u) > 100
    beside = np.minimum(grey[v, u - 4], grey[v, u + 4])
    assert np.median(grey[v, u]) > 120 and np.median(grey[v, u] - beside) > 60


def test_boxes_contain_the_feet_and_keypoints_mark_occlusion():
    camera, scene = sampled(5)
    # Person 2 is person 1 moved 3 m further along the camera's ray through the pelvis (sunk into the ground: a
    # test of occlusion, not of physics), so that person 1 hides most of it.
    away = scene.joints[1, 11:13].mean(0) - camera.centre
    shift = 3.0 * away / np.linalg.norm(away)
    scene.joints[2] = scene.joints[1] + shift
    scene.pitch_xy[2] = scene.pitch_xy[1] + shift[:2]
    frame = render(camera, scene, WIDTH, HEIGHT)
    for box, keypoints in zip(frame.boxes, frame.keypoints):
        feet = keypoints[15:17]
        if (feet[:, 2] > 0).all():
            assert (box[:2] <= feet[:, :2]).all() and (feet[:, :2] <= box[2:]).all()
    visible = frame.keypoints[:, 5:, 2] == 2  # the body, not the face (it may be turned away)
    assert visible[1].mean() > 0.8 and visible[2].mean() < 0.5


def test_scene_follows_a_tracking_layout():
    xy = np.array([[-40.0, 5.0], [-20.0, -10.0], [10.0, 3.0], [30.0, 8.0], [45.0, -2.0]])
    layout = Layout(xy=xy, team=np.array([0, 0, 1, 1, 1]), ball=np.array([12.0, 4.0, -1.5]))
    rng = np.random.default_rng(0)
    camera = sample_camera(rng, layout.ball[:2])
    scene = sample_scene(rng, camera, layout)
    assert np.array_equal(scene.pitch_xy[:5], xy) and list(scene.team) == [0, 0, 1, 1, 1, 2]  # a referee added
    assert np.allclose(scene.ball, [12.0, 4.0, -1.5 - render_module.BALL_RADIUS])
    assert np.allclose(scene.joints[:, 15:17, :2].mean(1), scene.pitch_xy, atol=0.6)  # feet under the pelvis
    assert list(scene.goalkeeper) == [True, False, False, False, True, False]


def test_write_split_is_read_back_by_the_real_loaders(tmp_path):
    folder = write_split(tmp_path / "a", "train", 3, seed=7, width=WIDTH, height=HEIGHT)
    assert folder == tmp_path / "a" / "train" and [p.name for p in (tmp_path / "a").iterdir()] == ["train"]
    frames = read_calibration_split(folder, require_camera=True)
    assert [frame.name for frame in frames] == ["000000", "000001", "000002"]
    for frame in frames:
        assert frame.lines and all((points >= 0).all() and (points <= 1).all() for points in frame.lines.values())
        assert frame.camera.image_size == (960.0, 540.0)
    state = read_gamestate(folder / "Labels-GameState.json")
    assert [image["file_name"] for image in state.images] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    coco = json.loads((folder / "person_keypoints.json").read_text())
    assert coco["categories"][0]["keypoints"] == list(COCO_KEYPOINTS)
    assert coco["categories"][0]["skeleton"] == [[a + 1, b + 1] for a, b in COCO_SKELETON]
    for image in state.images:
        players = state.players(image["image_id"])
        people = [p for p in players if p.role != "ball"]
        assert people and all(p.role in ("player", "goalkeeper", "referee") for p in people)
        assert all((p.team in ("left", "right")) == (p.role != "referee") for p in people)
        for p in players:
            assert 0 <= p.box[0] < p.box[2] <= WIDTH and 0 <= p.box[1] < p.box[3] <= HEIGHT
        skeletons = [a for a in coco["annotations"] if a["image_id"] == int(image["image_id"])]
        assert len(skeletons) == len(people)
    prompts = json.loads((folder / "prompts.json").read_text())
    assert sorted(prompts) == ["000000", "000001", "000002"]
    # The same seed writes the same bytes.
    again = write_split(tmp_path / "b", "train", 3, seed=7, width=WIDTH, height=HEIGHT)
    for path in sorted(folder.iterdir()):
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name
    with pytest.raises(FileExistsError):
        write_split(tmp_path / "a", "train", 1, seed=7)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(render_module, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        write_split(tmp_path, "train", 3, seed=0, width=64, height=36)
    assert list(Path(tmp_path).iterdir()) == []
