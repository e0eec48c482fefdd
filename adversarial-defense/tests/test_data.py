"""Data: the shape-texture generator and image-folder reader, Market-1501 loader and synthetic writer, photos."""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from adversarial_defense.data import reid, shapetexture
from adversarial_defense.data.photos import PHOTOS, imagenet_photos, preprocess
from adversarial_defense.metrics import market_cmc_map
from shared_utils.cache import MARKER
from shared_utils.datasets import DatasetFormatError

# --------------------------------------------------------------------------------------------------------------
# Shape-texture
# --------------------------------------------------------------------------------------------------------------


def test_shapetexture_generate_format_and_determinism() -> None:
    data = shapetexture.generate(seed=3, sizes={"train": 40, "val": 30})
    assert set(data) == {"train", "val"}
    images, labels = data["train"]
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [4] * 10  # balanced
    assert images.std() > 20  # textured images, not blank ones
    again = shapetexture.generate(seed=3, sizes={"train": 40, "val": 30})
    np.testing.assert_array_equal(again["train"][0], images)
    other_seed = shapetexture.generate(seed=4, sizes={"train": 40})
    assert not np.array_equal(other_seed["train"][0], images)
    # A split depends on its own size only: a larger training set leaves val as it was.
    bigger = shapetexture.generate(seed=3, sizes={"train": 60, "val": 30})
    np.testing.assert_array_equal(bigger["val"][0], data["val"][0])


def test_shapetexture_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="unknown shape-texture splits"):
        shapetexture.generate(0, {"training": 10})


def test_shapetexture_classes_differ_in_shape_and_texture() -> None:
    """Each class's object is its own shape: the object mask alone (no texture) differs between classes, and
    each class's texture differs from the others at the same parameters."""
    u, v = np.meshgrid(np.linspace(-1.2, 1.2, 48), np.linspace(-1.2, 1.2, 48))
    masks = np.stack([shapetexture._shape(s, u, v) for s in shapetexture.SHAPES]).reshape(10, -1)
    overlap = (masks[:, None] != masks[None]).mean(-1)  # fraction of differing pixels, pairwise
    assert overlap[~np.eye(10, dtype=bool)].min() > 0.03
    assert all(0.1 < m.mean() < 0.8 for m in masks)
    x, y = (a[None] * 12 for a in (u, v))
    params = np.full((1, shapetexture._N_PARAMS, 1, 1), 0.3, np.float32)
    textures = np.stack([shapetexture._texture(t, x, y, params) for t in shapetexture.TEXTURES]).reshape(10, -1)
    assert (np.abs(textures[:, None] - textures[None]).mean(-1) + np.eye(10)).min() > 0.1


def test_shapetexture_load_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"train": 20, "test": 10}
    first = shapetexture.load(tmp_path, seed=1, sizes=sizes)
    (folder,) = [p for p in tmp_path.iterdir()]
    assert (folder / MARKER).is_file() and (folder / "shapetexture.npz").is_file()

    def no_generation(*args, **kwargs):
        raise AssertionError("load regenerated a cached dataset")

    monkeypatch.setattr(shapetexture, "generate", no_generation)
    second = shapetexture.load(tmp_path, seed=1, sizes=sizes)
    for split in sizes:
        np.testing.assert_array_equal(first[split][0], second[split][0])
        np.testing.assert_array_equal(first[split][1], second[split][1])


def _touch(path: Path) -> None:
    """The reader goes by names only: an empty file stands for an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_read_image_folder_imagefolder_semantics(tmp_path: Path) -> None:
    for rel in ["dog/b.png", "dog/a.JPG", "dog/nested/c.webp", "cat/x.jpeg", "cat/y.TIFF",
                "cat/.hidden.jpg", "cat/notes.txt", "cat/.ipynb_checkpoints/z.jpg", ".trash/w.jpg"]:
        _touch(tmp_path / rel)
    paths, labels, classes = shapetexture.read_image_folder(tmp_path)
    assert classes == ["cat", "dog"]  # sorted; the hidden folder is no class
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "cat/x.jpeg", "cat/y.TIFF", "dog/a.JPG", "dog/b.png", "dog/nested/c.webp"]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 1, 1, 1]


def test_read_image_folder_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="missing.*not found"):
        shapetexture.read_image_folder(tmp_path / "missing")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DatasetFormatError, match="no class folders"):
        shapetexture.read_image_folder(tmp_path / "empty_root")
    _touch(tmp_path / "data" / "cat" / "a.png")
    (tmp_path / "data" / "dog").mkdir()
    (tmp_path / "data" / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetFormatError, match=r"class folder .*data/dog holds no image.*readme\.txt"):
        shapetexture.read_image_folder(tmp_path / "data")


# --------------------------------------------------------------------------------------------------------------
# Market-1501
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 0, 1, 451)),
    ("-1_c1s1_000401_03.jpg", (-1, 0, 1, 401)),
    ("0000_c6s4_002212_01.jpg", (0, 5, 4, 2212)),
    ("/data/Market/query/1501_c3s3_075694_00.jpg", (1501, 2, 3, 75694)),
])
def test_parse_market_name(name: str, expected: tuple[int, int, int, int]) -> None:
    assert reid.parse_market_name(name) == expected


@pytest.mark.parametrize("name", ["2_c1s1_000451_03.jpg", "0002_c0s1_000451_03.jpg", "0002_c1_000451_03.jpg",
                                  "0002_c1s1_451_03.jpg", "0002_c1s1_000451_03.png", "Thumbs.db"])
def test_parse_market_name_malformed(name: str) -> None:
    with pytest.raises(DatasetFormatError, match=rf"{name}.*expected <pid: 4 digits or -1>_c<camera"):
        reid.parse_market_name(name)


def _market_fixture(root: Path) -> None:
    files = {
        "bounding_box_train": ["0007_c2s1_000100_01.jpg", "0002_c1s1_000451_03.jpg", "0002_c3s1_000500_01.jpg",
                               "-1_c1s1_000401_03.jpg"],
        "query": ["0001_c1s1_001051_00.jpg", "0003_c2s1_000301_00.jpg"],
        "bounding_box_test": ["0001_c2s1_000201_01.jpg", "0003_c5s2_010101_02.jpg", "0000_c1s1_000151_01.jpg",
                              "-1_c4s2_000022_04.jpg"],
    }
    for folder, names in files.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(root / folder / name), np.full((128, 64, 3), 128, np.uint8))
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\0")  # shipped with the real dataset


def test_read_market1501_protocol(tmp_path: Path) -> None:
    _market_fixture(tmp_path)
    data = reid.read_market1501(tmp_path)

    def short(samples):
        return [(p.name[:4], pid, camid) for p, pid, camid in samples]

    assert short(data["train"]) == [("0002", 2, 0), ("0002", 2, 2), ("0007", 7, 1)]  # junk dropped, sorted
    assert short(data["query"]) == [("0001", 1, 0), ("0003", 3, 1)]
    assert short(data["gallery"]) == [("0000", 0, 0), ("0001", 1, 1), ("0003", 3, 4)]  # distractor kept
    assert all(p.is_file() for split in data.values() for p, _, _ in split)
    assert [(pid, camid) for _, pid, camid in reid.relabel_pids(data["train"])] == [(0, 0), (0, 2), (1, 1)]


def test_read_market1501_errors(tmp_path: Path) -> None:
    _market_fixture(tmp_path)
    for path in (tmp_path / "query").iterdir():
        path.unlink()
    with pytest.raises(DatasetFormatError, match="query holds no image"):
        reid.read_market1501(tmp_path)
    (tmp_path / "query").rmdir()
    with pytest.raises(DatasetFormatError, match=r"query not found.*bounding_box_train/\*\.jpg.*found in"):
        reid.read_market1501(tmp_path)
    cv2.imwrite(str(tmp_path / "bounding_box_train" / "person_3.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="person_3.jpg: not a Market-1501 image name"):
        reid.read_market1501(tmp_path)


def _colour_descriptor(paths: list[Path]) -> np.ndarray:
    """A crude appearance feature: the mean colour of 16 horizontal bands of the middle columns, divided by
    the image's mean colour (grey-world: cancels most of a camera's colour cast)."""
    feats = []
    for path in paths:
        image = cv2.imread(str(path)).astype(np.float32)
        image /= image.mean(axis=(0, 1))
        feats.append(image[:, 20:44].reshape(16, -1, 3).mean(1).ravel())
    return np.stack(feats)


def test_synthetic_market_layout_and_identity_signal(tmp_path: Path) -> None:
    root = reid.generate_synthetic_reid(tmp_path / "market", seed=0, num_train_ids=3, num_test_ids=6, cameras=4,
                                        distractors=3, junk=2)
    data = reid.read_market1501(root)
    train_pids = {pid for _, pid, _ in data["train"]}
    query = [(pid, camid) for _, pid, camid in data["query"]]
    gallery = [(pid, camid) for _, pid, camid in data["gallery"]]
    assert len(train_pids) == 3 and len({pid for pid, _ in query}) == 6
    assert not train_pids & {pid for pid, _ in query}  # disjoint identities
    assert len(query) == len(set(query))  # one query per identity and camera
    for pid, camid in query:  # every query has a match in another camera, and one in its own camera
        assert any(g_pid == pid and g_cam != camid for g_pid, g_cam in gallery)
        assert (pid, camid) in gallery
    assert sum(pid == 0 for pid, _ in gallery) == 3  # distractors kept
    assert len(list((root / "bounding_box_test").glob("-1_*.jpg"))) == 2  # junk written, dropped by the loader
    assert all(camid < 4 for split in data.values() for _, _, camid in split)
    image = cv2.imread(str(data["query"][0][0]))
    assert image.shape == (128, 64, 3)
    # Identity survives the camera changes: even a mean-colour descriptor retrieves people far above chance.
    q_feat, g_feat = _colour_descriptor([p for p, _, _ in data["query"]]), _colour_descriptor(
        [p for p, _, _ in data["gallery"]])
    distmat = ((q_feat[:, None] - g_feat[None]) ** 2).sum(-1)
    (q_pids, q_camids), (g_pids, g_camids) = (np.array(query).T, np.array(gallery).T)
    cmc, mAP = market_cmc_map(distmat, q_pids, g_pids, q_camids, g_camids)
    random_cmc, random_mAP = market_cmc_map(np.random.default_rng(0).random(distmat.shape), q_pids, g_pids,
                                            q_camids, g_camids)
    assert cmc[0] > 3 * random_cmc[0] and mAP > 2 * random_mAP


def test_synthetic_market_deterministic_and_cached(tmp_path: Path) -> None:
    kwargs = {"seed": 5, "num_train_ids": 2, "num_test_ids": 2, "cameras": 2, "distractors": 1, "junk": 1}
    a = reid.ensure_synthetic_reid(tmp_path / "cache", **kwargs)
    assert (a / MARKER).is_file()
    assert reid.ensure_synthetic_reid(tmp_path / "cache", **kwargs) == a
    b = reid.generate_synthetic_reid(tmp_path / "again", **kwargs)
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.jpg"))
    assert names_a == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.jpg"))
    np.testing.assert_array_equal(cv2.imread(str(a / names_a[0])), cv2.imread(str(b / names_a[0])))
    with pytest.raises(ValueError, match="cameras must be in 2..9"):
        reid.generate_synthetic_reid(tmp_path / "bad", cameras=10)


# --------------------------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------------------------


def test_preprocess_resizes_shorter_side_and_centre_crops() -> None:
    image = np.zeros((100, 300), np.uint8)  # grey, wide: a bright band in the middle third of the width
    image[:, 100:200] = 255
    x = preprocess(image, size=56)
    assert x.shape == (3, 56, 56) and x.dtype == torch.float32
    # shorter side 100 -> 64, width 300 -> 192, centre crop 56 of 192: columns 68..124 -> the band is 64..128
    assert x.min() >= 0 and x.max() <= 1 and torch.equal(x[0], x[2])
    assert x[:, :, 2:-2].min() > 0.99  # all the crop falls in the band, apart from its blurred edges


def test_imagenet_photos_are_classified_correctly_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("a photo tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = imagenet_photos()
    assert [name for name, _, _ in photos] == list(PHOTOS)
    from shared_utils.backbones import create_backbone

    net = create_backbone("efficientnet_lite0").eval()
    images = torch.stack([image for _, image, _ in photos])
    assert images.shape == (len(PHOTOS), 3, 224, 224) and 0 <= images.min() and images.max() <= 1
    with torch.no_grad():
        top1 = net.logits(images).argmax(1).tolist()
    for (name, _, accepted), predicted in zip(photos, top1):
        assert predicted in accepted, f"{name}: predicted ImageNet class {predicted}, accepted {accepted}"
