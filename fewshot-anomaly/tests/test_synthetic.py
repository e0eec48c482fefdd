"""The synthetic generator: MVTec AD layout, exact defect masks, determinism, pose jitter, the cache."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from fewshot_anomaly.data.synthetic import (
    CATEGORIES,
    DEFECTS,
    OBJECTS,
    TEXTURES,
    add_defect,
    defects_of,
    ensure_synthetic,
    generate,
    render_normal,
)

SMALL = {"image_size": 64, "n_train": 2, "n_test_good": 1, "n_test_per_defect": 2}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synthetic"), seed=3, **SMALL)


def test_layout_has_exact_mvtec_names(small_root: Path):
    expected = set()
    for category in CATEGORIES:
        expected |= {f"{category}/train/good/{i:03d}.png" for i in range(2)}
        expected |= {f"{category}/test/good/000.png"}
        for kind in defects_of(category):
            expected |= {f"{category}/test/{kind}/{i:03d}.png" for i in range(2)}
            expected |= {f"{category}/ground_truth/{kind}/{i:03d}_mask.png" for i in range(2)}
    assert set(_files(small_root)) == expected


def test_defects_per_kind():
    assert set(defects_of("circuit")) == {"scratch", "hole", "stain", "missing"}
    assert set(defects_of("wood")) == {"scratch", "hole", "stain", "extra"}
    assert set(TEXTURES) | set(OBJECTS) == set(CATEGORIES)
    with pytest.raises(ValueError, match="unknown synthetic category"):
        defects_of("bottle")


def test_written_images_and_masks(small_root: Path):
    for category in CATEGORIES:
        good = _read_rgb(small_root / category / "train" / "good" / "000.png")
        assert good.shape == (64, 64, 3) and good.dtype == np.uint8
        for kind in defects_of(category):
            for i in range(2):
                image = _read_rgb(small_root / category / "test" / kind / f"{i:03d}.png")
                mask = cv2.imread(str(small_root / category / "ground_truth" / kind / f"{i:03d}_mask.png"), -1)
                assert image.shape == (64, 64, 3)
                assert mask.shape == (64, 64) and mask.dtype == np.uint8
                assert set(np.unique(mask)) <= {0, 255}
                assert 0.001 <= (mask > 0).mean() <= 0.10, (category, kind, i)


def test_written_colours_are_rgb(small_root: Path):
    # cv2 writes BGR: a missed channel swap would turn brown wood blue and blue denim brown.
    wood = _read_rgb(small_root / "wood" / "train" / "good" / "000.png").reshape(-1, 3).mean(axis=0)
    fabric = _read_rgb(small_root / "fabric" / "train" / "good" / "000.png").reshape(-1, 3).mean(axis=0)
    assert wood[0] > wood[2] + 40 and fabric[2] > fabric[0] + 40


@pytest.mark.parametrize("category", CATEGORIES)
def test_mask_is_exactly_the_changed_pixels(category: str):
    kinds = set(defects_of(category)) | ({"extra"} if category in OBJECTS else set())
    for kind in sorted(kinds):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            normal, meta = render_normal(category, rng, 64)
            defective, mask = add_defect(normal, kind, rng, meta)
            assert mask.dtype == bool and mask.shape == (64, 64)
            diff = np.abs(defective.astype(int) - normal).mean(axis=-1)
            assert diff[~mask].max() == 0, (category, kind, "pixels changed outside the mask")
            assert diff[mask].mean() > 8, (category, kind, "defect barely changes the pixels in its mask")
            assert 0.001 <= mask.mean() <= 0.10


def test_missing_removes_a_part_and_needs_meta():
    rng = np.random.default_rng(0)
    normal, meta = render_normal("circuit", rng, 64)
    defective, mask = add_defect(normal, "missing", rng, meta)
    assert any(np.array_equal(mask, part["mask"]) for part in meta["parts"])
    with pytest.raises(ValueError, match="missing"):
        add_defect(normal, "missing", rng)
    texture, texture_meta = render_normal("fabric", rng, 64)
    with pytest.raises(ValueError, match="missing"):
        add_defect(texture, "missing", rng, texture_meta)
    with pytest.raises(ValueError, match="unknown defect"):
        add_defect(normal, "crack", rng)


def test_meta_free_defects_work_on_any_rgb_image():
    # A non-square, real-looking image: a smooth gradient with noise, as a held-out normal of a real dataset.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:90, 0:150]
    image = np.clip(np.stack([x, y, x + y], -1) * 0.8 + rng.normal(0, 5, (90, 150, 3)), 0, 255).astype(np.uint8)
    for kind in ("scratch", "hole", "stain", "extra"):
        defective, mask = add_defect(image, kind, np.random.default_rng(1))
        assert defective.shape == image.shape and mask.shape == (90, 150)
        assert np.array_equal(defective[~mask], image[~mask])
        assert 0.001 <= mask.mean() <= 0.10
    assert set(DEFECTS) == {"scratch", "hole", "stain", "missing", "extra"}


def test_generate_is_deterministic(tmp_path: Path, small_root: Path):
    again = _files(generate(tmp_path / "again", seed=3, **SMALL))
    assert again == _files(small_root)
    other = _files(generate(tmp_path / "other", seed=4, **SMALL))
    assert set(other) == set(again)
    assert all(other[name] != again[name] for name in again)
    # Child seeds per (category, split, index): one category alone gives the same images.
    alone = _files(generate(tmp_path / "alone", categories=("screws",), seed=3, **SMALL))
    assert alone == {name: data for name, data in again.items() if name.startswith("screws/")}


def test_generate_refuses_to_overwrite(small_root: Path):
    with pytest.raises(FileExistsError, match="fabric"):
        generate(small_root, categories=("fabric",), **SMALL)


def _board_pose(image: np.ndarray) -> tuple[float, float, float]:
    """Centroid (x, y) and orientation (degrees) of the object, from moments of its thresholded silhouette."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(float)
    far = np.abs(image.astype(float) - np.median(border, axis=0)).sum(axis=-1) > 45  # not the backdrop
    contours, _ = cv2.findContours(far.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    silhouette = np.zeros(image.shape[:2], np.uint8)  # filled outline: dark parts on the board count too
    cv2.drawContours(silhouette, [max(contours, key=cv2.contourArea)], -1, 1, -1)
    m = cv2.moments(silhouette, binaryImage=True)
    angle = 0.5 * np.degrees(np.arctan2(2 * m["mu11"], m["mu20"] - m["mu02"]))
    return m["m10"] / m["m00"], m["m01"] / m["m00"], angle


@pytest.mark.parametrize("category", OBJECTS)
def test_objects_have_pose_jitter(category: str):
    poses = []
    for seed in range(6):
        image, meta = render_normal(category, np.random.default_rng(seed), 64)
        x, y, angle = _board_pose(image)
        # The silhouette moves as the metadata says (cv2 angles are counter-clockwise, moments' clockwise).
        assert abs(x - 32 - meta["pose"]["shift"][0]) < 1 and abs(y - 32 - meta["pose"]["shift"][1]) < 1
        assert abs(angle + meta["pose"]["angle"]) < 4
        poses.append((x, y, angle))
    x, y, angle = np.array(poses).T
    assert np.ptp(x) > 3 or np.ptp(y) > 3
    assert np.ptp(angle) > 10


@pytest.mark.parametrize("category", TEXTURES)
def test_textures_are_stationary(category: str):
    for seed in range(4):
        image, meta = render_normal(category, np.random.default_rng(seed), 64)
        assert meta["parts"] == [] and meta["pose"] is None
        lum = image.astype(float) @ [0.299, 0.587, 0.114]
        quadrants = [lum[:32, :32], lum[:32, 32:], lum[32:, :32], lum[32:, 32:]]
        means, stds = [q.mean() for q in quadrants], [q.std() for q in quadrants]
        assert np.ptp(means) < 0.1 * lum.mean()
        assert max(stds) < 2 * min(stds)


def test_normal_images_differ_by_jitter_and_noise():
    a, _ = render_normal("fabric", np.random.default_rng(0), 64)
    b, _ = render_normal("fabric", np.random.default_rng(1), 64)
    assert np.abs(a.astype(int) - b).mean() > 3


def test_ensure_synthetic_generates_once(tmp_path: Path):
    kwargs = {"categories": ("fabric", "circuit"), "image_size": 64, "n_train": 1, "n_test_good": 1}
    root = ensure_synthetic(tmp_path, n_test_per_defect=1, **kwargs)
    assert (root / "_COMPLETE.json").exists() and root.parent == tmp_path
    image = root / "circuit" / "test" / "missing" / "000.png"
    stamp = image.stat().st_mtime_ns, (root / "_COMPLETE.json").stat().st_mtime_ns
    # Defaults filled in: the same dataset whether n_test_per_defect is given or left to its default value.
    assert ensure_synthetic(tmp_path, n_test_per_defect=1, **kwargs) == root
    assert (image.stat().st_mtime_ns, (root / "_COMPLETE.json").stat().st_mtime_ns) == stamp
    assert ensure_synthetic(tmp_path, n_test_per_defect=2, **kwargs) != root
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left over


def test_ensure_synthetic_redoes_a_folder_without_marker(tmp_path: Path):
    kwargs = {"categories": ("wood",), "image_size": 64, "n_train": 1, "n_test_good": 1, "n_test_per_defect": 1}
    root = ensure_synthetic(tmp_path, **kwargs)
    complete = _files(root)
    (root / "_COMPLETE.json").unlink()  # as if generation had been interrupted
    (root / "wood" / "train" / "good" / "000.png").unlink()
    (root / "half_written.png").write_bytes(b"")
    assert ensure_synthetic(tmp_path, **kwargs) == root
    assert _files(root) == complete
