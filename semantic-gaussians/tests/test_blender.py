"""NeRF-synthetic / D-NeRF scenes (data/blender.py): Blender camera-to-world poses project known world points to
hand-computed pixels, RGBA images are composited over the background, D-NeRF's time is read, and malformed scenes
raise DatasetFormatError naming the path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from semantic_gaussians.data.blender import BlenderScene
from shared_utils.datasets import DatasetFormatError

WIDTH, HEIGHT = 8, 6
ANGLE_X = 2 * math.atan(0.5)  # fx = 0.5 W / tan(angle / 2) = W = 8 px

# Blender camera-to-world (x right, y up, z backward): camera at (0, 0, 4) looking down -z at the origin ...
FRONT = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]
# ... and camera at (4, 0, 0) looking down -x at the origin: right = +y, up = +z, backward = +x
SIDE = [[0, 0, 1, 4], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]


def _rgba(seed: int) -> np.ndarray:
    """RGBA uint8 with alpha 255, 0 and 128 in the first three pixels of row 0."""
    rgba = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, 1, 3], rgba[0, 2, 3] = 0, 128
    return rgba


def _write_scene(root: Path, split: str = "train", frames: list[dict] | None = None, **meta) -> list[np.ndarray]:
    """transforms_<split>.json plus one RGBA png per frame (file_path without extension, as in NeRF-synthetic)."""
    frames = frames if frames is not None else [{"file_path": f"./{split}/r_0", "transform_matrix": FRONT},
                                                {"file_path": f"./{split}/r_1", "transform_matrix": SIDE}]
    (root / split).mkdir(parents=True, exist_ok=True)
    images = []
    for i, frame in enumerate(frames):
        images.append(_rgba(i))
        cv2.imwrite(str(root / f"{frame['file_path']}.png"), cv2.cvtColor(images[-1], cv2.COLOR_RGBA2BGRA))
    (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": ANGLE_X, **meta, "frames": frames}))
    return images


def _project(sample: dict, point) -> np.ndarray:
    x = sample["K"] @ (sample["world_to_camera"] @ torch.tensor([*point, 1.0]))[:3]
    assert x[2] > 0  # in front of the camera
    return (x[:2] / x[2]).numpy()


def test_known_points_project_to_hand_computed_pixels(tmp_path):
    _write_scene(tmp_path)
    scene = BlenderScene(tmp_path)
    front, side = scene[0], scene[1]
    np.testing.assert_allclose(front["K"].numpy(), [[8, 0, 4], [0, 8, 3], [0, 0, 1]], atol=1e-6)
    assert front["world_to_camera"].dtype == torch.float32 and front["K"].dtype == torch.float32
    np.testing.assert_allclose(_project(front, (0, 0, 0)), [4, 3], atol=1e-6)  # the image centre
    np.testing.assert_allclose(_project(front, (0.5, 0, 0)), [4 + 8 * 0.5 / 4, 3], atol=1e-6)  # right of it
    np.testing.assert_allclose(_project(front, (0, 0.5, 0)), [4, 3 - 8 * 0.5 / 4], atol=1e-6)  # up = smaller y
    np.testing.assert_allclose(_project(side, (0, 0.5, 0)), [5, 3], atol=1e-6)  # +y is the side camera's right
    np.testing.assert_allclose(_project(side, (0, 0, 0.5)), [4, 2], atol=1e-6)  # +z is its up
    assert (front["image_name"], side["image_name"], side["index"]) == ("r_0", "r_1", 1)
    # centres (0, 0, 4) and (4, 0, 0): mean (2, 0, 2), both at distance sqrt(8)
    assert scene.cameras_extent == pytest.approx(1.1 * math.sqrt(8))


def test_alpha_is_composited_over_the_background(tmp_path):
    rgba = _write_scene(tmp_path)[0] / 255.0
    for background in ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)):
        sample = BlenderScene(tmp_path, background=background)[0]
        assert sample["image"].shape == (3, HEIGHT, WIDTH) and sample["alpha"].shape == (HEIGHT, WIDTH)
        image = sample["image"].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(sample["alpha"].numpy(), rgba[..., 3], atol=1e-6)
        np.testing.assert_allclose(image[0, 0], rgba[0, 0, :3], atol=1e-6)  # opaque: the RGB channels, in order
        np.testing.assert_allclose(image[0, 1], background, atol=1e-6)  # transparent
        np.testing.assert_allclose(image[0, 2], rgba[0, 2, :3] * 128 / 255 + np.multiply(background, 127 / 255),
                                   atol=1e-6)


def test_rgb_png_has_full_alpha_and_downscale_halves_k(tmp_path):
    _write_scene(tmp_path)
    rgb = np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "train" / "r_0.png"), rgb[..., ::-1])
    sample = BlenderScene(tmp_path)[0]
    assert torch.equal(sample["alpha"], torch.ones(HEIGHT, WIDTH))
    np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-6)
    half = BlenderScene(tmp_path, downscale=2)[0]
    assert half["image"].shape == (3, HEIGHT // 2, WIDTH // 2) and half["alpha"].shape == (HEIGHT // 2, WIDTH // 2)
    np.testing.assert_allclose(half["K"].numpy(), [[4, 0, 2], [0, 4, 1.5], [0, 0, 1]], atol=1e-6)


def test_dnerf_time_and_camera_angle_y(tmp_path):
    frames = [{"file_path": "./val/r_000.png", "transform_matrix": FRONT, "time": 0.75},  # with its extension
              {"file_path": "./val/r_001", "transform_matrix": SIDE}]
    _write_scene(tmp_path, "val", frames, camera_angle_y=2 * math.atan(0.25))
    (tmp_path / "val" / "r_000.png.png").rename(tmp_path / "val" / "r_000.png")
    scene = BlenderScene(tmp_path, split="val")
    assert scene[0]["time"] == 0.75 and scene[1]["time"] == 0.0
    np.testing.assert_allclose(scene[0]["K"].numpy(), [[8, 0, 4], [0, 12, 3], [0, 0, 1]], atol=1e-5)


def test_missing_transforms_file_lists_the_folder(tmp_path):
    _write_scene(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"transforms_test.json not found: .*found in .*transforms_train.json"):
        BlenderScene(tmp_path, split="test")


@pytest.mark.parametrize(("frame", "message"), [
    ({"file_path": "./train/r_0"}, r"transforms_train.json frames\[1\]: no transform_matrix field"),
    ({"file_path": "./train/r_0", "transform_matrix": FRONT[:3]},
     r"transforms_train.json frames\[1\] \(transform_matrix\): expected a 4 x 4"),
    ({"file_path": "./train/r_9", "transform_matrix": FRONT},
     r"train/r_9 not found .*transforms_train.json frames\[1\] \(file_path\)"),
])
def test_malformed_frames_name_the_file_frame_and_field(tmp_path, frame, message):
    _write_scene(tmp_path)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"][1] = frame
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match=message):
        BlenderScene(tmp_path)
