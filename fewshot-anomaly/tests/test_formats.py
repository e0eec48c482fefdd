"""Loaders against tiny fixtures written in the exact MVTec AD, MVTec LOCO AD and VisA layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fewshot_anomaly.data.dataset import AnomalyDataset
from fewshot_anomaly.data.formats import (
    LAYOUTS,
    Sample,
    list_categories,
    mvtec_ad,
    mvtec_loco,
    visa,
)
from shared_utils.datasets import DatasetFormatError

H, W = 20, 24  # fixture images are deliberately not square, so that (H, W) mix-ups show


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def image(value: int = 128) -> np.ndarray:
    return np.full((H, W, 3), value, dtype=np.uint8)


def mask(rows: slice, cols: slice, value: int = 255, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[rows, cols] = value
    return m


def make_mvtec_ad(root: Path) -> Path:
    """bottle: 3 train, test good x1, broken_large x2, contamination x1 (masks in ground_truth)."""
    cat = root / "bottle"
    for name in ("002", "000", "001"):  # written unsorted: the index must sort
        write(cat / "train" / "good" / f"{name}.png", image())
    write(cat / "test" / "good" / "000.png", image())
    for defect, stems in {"broken_large": ("001", "000"), "contamination": ("000",)}.items():
        for stem in stems:
            write(cat / "test" / defect / f"{stem}.png", image())
            write(cat / "ground_truth" / defect / f"{stem}_mask.png", mask(slice(0, 5), slice(0, 6)))
    write(root / "screw" / "train" / "good" / "000.png", image())
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")  # shipped with MVTec AD, not a category
    return root


def make_mvtec_loco(root: Path) -> Path:
    """breakfast_box: 2 train, 1 validation, test good x1, logical x1 (two region masks), structural x1."""
    cat = root / "breakfast_box"
    for name in ("001", "000"):
        write(cat / "train" / "good" / f"{name}.png", image())
    write(cat / "validation" / "good" / "000.png", image())
    write(cat / "test" / "good" / "000.png", image())
    write(cat / "test" / "logical_anomalies" / "000.png", image())
    write(cat / "test" / "structural_anomalies" / "000.png", image())
    # Two regions of one logical anomaly, stored as region ids (not 255) in two files to be ORed.
    gt = cat / "ground_truth"
    write(gt / "logical_anomalies" / "000" / "000.png", mask(slice(0, 4), slice(0, 4), value=1))
    write(gt / "logical_anomalies" / "000" / "001.png", mask(slice(10, 20), slice(20, 24), value=2))
    write(gt / "structural_anomalies" / "000" / "000.png", mask(slice(5, 10), slice(5, 10)))
    return root


VISA_CSV = """object,split,label,image,mask
candle,train,normal,candle/Data/Images/Normal/0001.JPG,
candle,train,normal,candle/Data/Images/Normal/0000.JPG,
candle,test,normal,candle/Data/Images/Normal/0002.JPG,
candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png
pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,
"""


def make_visa(root: Path, csv_text: str = VISA_CSV) -> Path:
    for name in ("0000", "0001", "0002"):
        write(root / "candle" / "Data" / "Images" / "Normal" / f"{name}.JPG", image())
    write(root / "candle" / "Data" / "Images" / "Anomaly" / "000.JPG", image())
    write(root / "candle" / "Data" / "Masks" / "Anomaly" / "000.png", mask(slice(2, 8), slice(3, 9)))
    write(root / "pcb1" / "Data" / "Images" / "Normal" / "0000.JPG", image())
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text(csv_text)
    return root


# --- index builders -------------------------------------------------------------------------------------------


def test_mvtec_ad_index(tmp_path: Path) -> None:
    root = make_mvtec_ad(tmp_path)
    train = mvtec_ad(root, "bottle", "train")
    assert [s.image.name for s in train] == ["000.png", "001.png", "002.png"]
    assert all(s.label == 0 and s.defect == "good" and s.masks == () and s.category == "bottle" for s in train)

    test = mvtec_ad(root, "bottle", "test")
    assert [s.image for s in test] == sorted(s.image for s in test)
    assert [(s.defect, s.image.name, s.label) for s in test] == [
        ("broken_large", "000.png", 1),
        ("broken_large", "001.png", 1),
        ("contamination", "000.png", 1),
        ("good", "000.png", 0),
    ]
    assert test[1].masks == (root / "bottle" / "ground_truth" / "broken_large" / "001_mask.png",)
    assert test[3].masks == ()
    assert LAYOUTS["mvtec_ad"] is mvtec_ad


def test_mvtec_loco_index(tmp_path: Path) -> None:
    root = make_mvtec_loco(tmp_path)
    assert [s.image.name for s in mvtec_loco(root, "breakfast_box", "train")] == ["000.png", "001.png"]
    validation = mvtec_loco(root, "breakfast_box", "validation")
    assert [(s.label, s.defect) for s in validation] == [(0, "good")]

    test = mvtec_loco(root, "breakfast_box", "test")
    assert [(s.defect, s.label, len(s.masks)) for s in test] == [
        ("good", 0, 0),
        ("logical_anomalies", 1, 2),
        ("structural_anomalies", 1, 1),
    ]
    assert [m.name for m in test[1].masks] == ["000.png", "001.png"]


def test_visa_index(tmp_path: Path) -> None:
    root = make_visa(tmp_path)
    train = visa(root, "candle", "train")
    assert [s.image.name for s in train] == ["0000.JPG", "0001.JPG"]  # sorted, not in csv order
    assert all(s.label == 0 and s.defect == "good" and s.masks == () for s in train)

    test = visa(root, "candle", "test")
    assert [(s.image.name, s.label, s.defect) for s in test] == [("000.JPG", 1, "anomaly"), ("0002.JPG", 0, "good")]
    assert test[0].masks == (root / "candle" / "Data" / "Masks" / "Anomaly" / "000.png",)
    assert all(s.category == "candle" for s in test)
    assert [s.category for s in visa(root, "pcb1", "train")] == ["pcb1"]


def test_list_categories(tmp_path: Path) -> None:
    assert list_categories(make_mvtec_ad(tmp_path / "ad"), "mvtec_ad") == ["bottle", "screw"]
    assert list_categories(make_mvtec_loco(tmp_path / "loco"), "mvtec_loco") == ["breakfast_box"]
    assert list_categories(make_visa(tmp_path / "visa"), "visa") == ["candle", "pcb1"]  # not split_csv
    with pytest.raises(ValueError, match="unknown layout"):
        list_categories(tmp_path, "mvtec")


# --- index errors ---------------------------------------------------------------------------------------------


def test_missing_root_names_it(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    for layout, build in LAYOUTS.items():
        with pytest.raises(DatasetFormatError, match=f"{root}.*does not exist"):
            build(root, "bottle", "train")
        with pytest.raises(DatasetFormatError, match=str(root)):
            list_categories(root, layout)


def test_missing_category_lists_present_ones(tmp_path: Path) -> None:
    root = make_mvtec_ad(tmp_path)
    with pytest.raises(DatasetFormatError) as err:
        mvtec_ad(root, "botle", "train")
    assert str(root / "botle") in str(err.value)
    assert "MVTec AD layout" in str(err.value)
    assert "['bottle', 'screw']" in str(err.value)


def test_root_one_level_off_shows_its_content(tmp_path: Path) -> None:
    """Pointing at <root>/bottle instead of <root>: no category there, so the error shows what is there."""
    root = make_mvtec_ad(tmp_path) / "bottle"
    with pytest.raises(DatasetFormatError) as err:
        mvtec_ad(root, "bottle", "train")
    message = str(err.value)
    assert f"{root / 'bottle'} not found" in message
    assert "ground_truth/" in message and "train/" in message


def test_category_without_split_folder(tmp_path: Path) -> None:
    root = tmp_path
    write(root / "bottle" / "test" / "good" / "000.png", image())
    (root / "bottle" / "train").mkdir()
    with pytest.raises(DatasetFormatError) as err:
        mvtec_ad(root, "bottle", "train")
    message = str(err.value)
    assert f"{root / 'bottle' / 'train' / 'good'} not found" in message
    assert "{train/good,test/<defect>,ground_truth/<defect>/<stem>_mask.png}" in message
    assert f"found nothing: {root / 'bottle' / 'train'} is empty" in message


def test_empty_split_folder_is_an_error(tmp_path: Path) -> None:
    root = make_mvtec_loco(tmp_path)
    folder = root / "breakfast_box" / "validation" / "good"
    (folder / "000.png").unlink()
    (folder / "notes.txt").write_text("")
    with pytest.raises(DatasetFormatError, match=rf"no \.png images in {folder}.*notes\.txt"):
        mvtec_loco(root, "breakfast_box", "validation")


def test_mvtec_ad_anomaly_without_mask(tmp_path: Path) -> None:
    root = make_mvtec_ad(tmp_path)
    expected_mask = root / "bottle" / "ground_truth" / "contamination" / "000_mask.png"
    expected_mask.unlink()
    with pytest.raises(DatasetFormatError) as err:
        mvtec_ad(root, "bottle", "test")
    assert str(root / "bottle" / "test" / "contamination" / "000.png") in str(err.value)
    assert str(expected_mask) in str(err.value)


def test_mvtec_loco_missing_or_empty_mask_folder(tmp_path: Path) -> None:
    root = make_mvtec_loco(tmp_path)
    mask_dir = root / "breakfast_box" / "ground_truth" / "structural_anomalies" / "000"
    for m in mask_dir.iterdir():
        m.unlink()
    with pytest.raises(DatasetFormatError, match=f"mask folder {mask_dir} .* holds no"):
        mvtec_loco(root, "breakfast_box", "test")
    mask_dir.rmdir()
    with pytest.raises(DatasetFormatError) as err:
        mvtec_loco(root, "breakfast_box", "test")
    assert str(root / "breakfast_box" / "test" / "structural_anomalies" / "000.png") in str(err.value)
    assert str(mask_dir) in str(err.value)


def test_visa_row_with_missing_image_names_line(tmp_path: Path) -> None:
    root = make_visa(tmp_path)
    missing = root / "candle" / "Data" / "Images" / "Normal" / "0002.JPG"
    missing.unlink()
    with pytest.raises(DatasetFormatError) as err:
        visa(root, "candle", "test")
    assert f"1cls.csv line 4: image {missing} not found" in str(err.value)


def test_visa_anomaly_without_mask_names_line(tmp_path: Path) -> None:
    root = make_visa(tmp_path, VISA_CSV.replace("candle/Data/Masks/Anomaly/000.png", ""))
    with pytest.raises(DatasetFormatError, match=r"1cls\.csv line 5: mask \(empty\)"):
        visa(root, "candle", "test")


def test_visa_csv_problems(tmp_path: Path) -> None:
    root = make_visa(tmp_path, "object,split,image\ncandle,train,candle/Data/Images/Normal/0000.JPG\n")
    with pytest.raises(DatasetFormatError, match=r"lacks columns \['label', 'mask'\]"):
        visa(root, "candle", "train")
    (root / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(DatasetFormatError, match=f"{root / 'split_csv' / '1cls.csv'} not found"):
        visa(root, "candle", "train")


def test_visa_category_without_rows_lists_objects(tmp_path: Path) -> None:
    root = make_visa(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"no 'test' rows for object 'pcb1'.*\['candle', 'pcb1'\]"):
        visa(root, "pcb1", "test")


def test_unknown_split(tmp_path: Path) -> None:
    root = make_mvtec_ad(tmp_path)
    with pytest.raises(ValueError, match="'val'"):
        mvtec_ad(root, "bottle", "val")
    with pytest.raises(ValueError, match="'validation'"):
        visa(root, "bottle", "validation")


# --- dataset --------------------------------------------------------------------------------------------------


def test_dataset_item_shapes_values_and_resize(tmp_path: Path) -> None:
    root = make_mvtec_ad(tmp_path)
    samples = mvtec_ad(root, "bottle", "test")
    for size in (8, 48):  # downsampling (INTER_AREA) and upsampling (INTER_LINEAR)
        item = AnomalyDataset(samples, image_size=size)[0]
        assert item["image"].shape == (3, size, size) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (size, size) and item["mask"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert torch.allclose(item["image"], torch.full_like(item["image"], 128 / 255), atol=1 / 255)
        assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
        # The mask covers rows 0:5 of 20 and cols 0:6 of 24, i.e. the top-left quarter of each axis.
        expected = torch.zeros(size, size)
        expected[: size // 4, : size // 4] = 1
        assert torch.equal(item["mask"], expected)
        assert item["label"].dtype == torch.int64 and item["label"].item() == 1
        assert (item["category"], item["defect"], item["path"]) == ("bottle", "broken_large", str(samples[0].image))
    good = AnomalyDataset(samples, image_size=16)[3]
    assert good["label"].item() == 0 and good["defect"] == "good" and good["mask"].sum() == 0


def test_dataset_rgb_order_and_grayscale(tmp_path: Path) -> None:
    bgr = np.zeros((H, W, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    red = write(tmp_path / "red.png", bgr)
    gray = write(tmp_path / "gray.png", np.full((H, W), 200, dtype=np.uint8))
    data = AnomalyDataset([Sample(red, (), 0, "good", "c"), Sample(gray, (), 0, "good", "c")], image_size=8)
    assert data[0]["image"][:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert data[1]["image"].shape == (3, 8, 8)
    assert torch.allclose(data[1]["image"], torch.full((3, 8, 8), 200 / 255))


def test_dataset_ors_loco_masks(tmp_path: Path) -> None:
    root = make_mvtec_loco(tmp_path)
    logical = mvtec_loco(root, "breakfast_box", "test")[1]
    union = np.zeros((H, W), np.uint8)  # the two region files of the fixture, ids 1 and 2
    union[0:4, 0:4] = 1
    union[10:20, 20:24] = 1
    item = AnomalyDataset([logical], image_size=12)[0]
    expected = cv2.resize(union, (12, 12), interpolation=cv2.INTER_NEAREST)
    assert torch.equal(item["mask"], torch.from_numpy(expected).float())
    assert item["mask"][0, 0] == 1 and item["mask"][-1, -1] == 1  # one region from each file


def test_dataset_reads_visa(tmp_path: Path) -> None:
    data = AnomalyDataset(visa(make_visa(tmp_path), "candle", "test"), image_size=H)
    anomaly = data[0]
    assert anomaly["label"].item() == 1 and anomaly["defect"] == "anomaly" and anomaly["mask"].sum() > 0
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch["image"].shape == (2, 3, H, H) and batch["label"].tolist() == [1, 0]
    assert batch["defect"] == ["anomaly", "good"] and len(batch["path"]) == 2


def test_dataset_transform_is_seeded_and_full_resolution(tmp_path: Path) -> None:
    samples = mvtec_ad(make_mvtec_ad(tmp_path), "bottle", "train")
    seen_shapes = []

    def paste_square(img: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A stand-in synthetic defect: a random square of random colour."""
        seen_shapes.append((img.shape, img.dtype, m.shape, m.dtype))
        r, c = rng.integers(0, H - 4), rng.integers(0, W - 4)
        img, m = img.copy(), m.copy()
        img[r : r + 4, c : c + 4] = rng.integers(0, 256, 3)
        m[r : r + 4, c : c + 4] = True
        return img, m

    data = AnomalyDataset(samples, image_size=H, transform=paste_square, seed=3)
    first, again, other = data[0], data[0], data[1]
    assert seen_shapes[0] == ((H, W, 3), np.uint8, (H, W), np.bool_)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert not torch.equal(first["mask"], other["mask"])  # per-item generators differ
    assert first["label"].item() == 1 and first["defect"] == "synthetic" and first["mask"].sum() > 0
    reseeded = AnomalyDataset(samples, image_size=H, transform=paste_square, seed=4)[0]
    assert not torch.equal(first["image"], reseeded["image"])
    assert torch.equal(data[-3]["image"], first["image"])  # negative index: same item, same generator

    identity = AnomalyDataset(samples, image_size=H, transform=lambda img, m, rng: (img, m))[0]
    assert identity["label"].item() == 0 and identity["defect"] == "good"


def test_dataset_rejects_bad_transform_output(tmp_path: Path) -> None:
    samples = mvtec_ad(make_mvtec_ad(tmp_path), "bottle", "train")
    data = AnomalyDataset(samples, image_size=8, transform=lambda img, m, rng: (img / 255.0, m))
    with pytest.raises(TypeError, match="uint8"):
        data[0]


def test_dataset_unreadable_image_names_file(tmp_path: Path) -> None:
    broken = tmp_path / "000.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match=f"cannot read image {broken}"):
        AnomalyDataset([Sample(broken, (), 0, "good", "c")], image_size=8)[0]


def test_dataset_mask_of_another_size_names_both(tmp_path: Path) -> None:
    img = write(tmp_path / "000.png", image())
    small = write(tmp_path / "000_mask.png", mask(slice(0, 2), slice(0, 2), shape=(10, 12)))
    with pytest.raises(DatasetFormatError) as err:
        AnomalyDataset([Sample(img, (small,), 1, "crack", "c")], image_size=8)[0]
    message = str(err.value)
    assert str(small) in message and str(img) in message
    assert "12x10" in message and "24x20" in message


def test_dataset_rejects_empty_samples() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        AnomalyDataset([], image_size=8)
