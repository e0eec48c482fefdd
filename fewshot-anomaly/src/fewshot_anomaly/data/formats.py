"""Index builders for the official on-disk layouts of the three industrial anomaly benchmarks.

- MVTec AD (Bergmann et al., "MVTec AD - A Comprehensive Real-World Dataset for Unsupervised Anomaly
  Detection", CVPR 2019): ``<root>/<category>/{train/good,test/<defect>,ground_truth/<defect>/<stem>_mask.png}``.
- MVTec LOCO AD (Bergmann et al., "Beyond Dents and Scratches: Logical Constraints in Unsupervised Anomaly
  Detection and Localization", IJCV 2022): ``<root>/<category>/{train/good,validation/good,test/<defect>}``
  with one mask *folder* per anomalous image, ``ground_truth/<defect>/<stem>/*.png``, whose files are ORed.
- VisA (Zou et al., "SPot-the-Difference Self-Supervised Pre-training for Anomaly Detection and
  Segmentation", ECCV 2022): the split file ``<root>/split_csv/1cls.csv`` shipped with the dataset lists
  every image and mask relative to ``<root>``.
- ELPV (Buerhop-Lutz et al., "A Benchmark for Visual Identification of Defective Solar Cells in
  Electroluminescence Imagery", EU PVSEC 2018; Deitsch et al., Solar Energy 2019): ``<root>/labels.csv``
  (whitespace-separated ``images/cellNNNN.png probability type``) beside ``<root>/images/``, the layout of
  the dataset's repository and of the ``elpv-dataset`` package's ``data`` folder. No masks: image level only.

Each builder returns a sorted list of :class:`Sample` (paths only, nothing is decoded here) so that the
same :class:`~fewshot_anomaly.data.dataset.AnomalyDataset` reads all three. A missing or malformed layout
raises :class:`~shared_utils.datasets.DatasetFormatError` naming the path, the expected layout and what
was found: never an empty list, never a silently skipped image.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared_utils.datasets import DatasetFormatError, folder_listing

MVTEC_AD_LAYOUT = "MVTec AD layout <root>/<category>/{train/good,test/<defect>,ground_truth/<defect>/<stem>_mask.png}"
MVTEC_LOCO_LAYOUT = (
    "MVTec LOCO AD layout <root>/<category>/{train/good,validation/good,test/<defect>,"
    "ground_truth/<defect>/<stem>/*.png}"
)
VISA_LAYOUT = (
    "VisA layout <root>/split_csv/1cls.csv (columns object,split,label,image,mask; paths relative to <root>) "
    "with images and masks under <root>/<category>/Data/{Images,Masks}"
)
VISA_COLUMNS = ("object", "split", "label", "image", "mask")
ELPV_LAYOUT = ("ELPV layout <root>/labels.csv (lines 'images/cellNNNN.png <defect probability> <mono|poly>') "
               "with the images under <root>/images")
# Half of each cell type's normal cells are test cells, the same for every seed and k (a fixed split, as a
# benchmark's test set is): the other half is the pool of k-shot training and validation cells.
ELPV_TEST_NORMAL_FRACTION = 0.5
ELPV_SPLIT_SEED = "elpv-split-v1"
# MVTec AD and LOCO ship PNGs only; anything else in their folders (e.g. a stray .DS_Store) is not an image.
PNG = ".png"


@dataclass(frozen=True)
class Sample:
    """One image of a benchmark, as paths: decoding happens in the Dataset, not at indexing time."""

    image: Path
    masks: tuple[Path, ...]  # empty for normal images; several are ORed (MVTec LOCO)
    label: int  # 0 normal, 1 anomalous, -1 uncertain (ELPV's 1/3 and 2/3 cells: reported apart from the metrics)
    defect: str  # "good" or the defect type
    category: str


def _not_found(path: Path, root: Path, expected: str) -> DatasetFormatError:
    """Error for a missing ``path``: shows the contents of its closest existing ancestor, up to ``root``."""
    existing = path.parent
    while existing != root and not existing.is_dir():
        existing = existing.parent
    return DatasetFormatError(f"{path} not found: expected the {expected}; {folder_listing(existing)}")


def _check_split(split: str, splits: tuple[str, ...], layout: str) -> None:
    if split not in splits:
        raise ValueError(f"unknown {layout} split {split!r}: expected one of {list(splits)}")


def _category_dir(root: Path, category: str, layout: str, expected: str) -> Path:
    """``<root>/<category>``, or an error that lists the categories present (a typo is the usual cause)."""
    folder = root / category
    if not root.is_dir():
        raise _not_found(folder, root, expected)
    if not folder.is_dir():
        # No category at all usually means the root is one level off: then show what the root holds.
        present = list_categories(root, layout)
        found = f"categories present in {root}: {present}" if present else folder_listing(root)
        raise DatasetFormatError(f"{folder} not found: expected the {expected}; {found}")
    return folder


def _pngs(folder: Path, root: Path, expected: str) -> list[Path]:
    """Sorted PNGs of a folder that must exist and hold at least one (an empty split is a broken download)."""
    if not folder.is_dir():
        raise _not_found(folder, root, expected)
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == PNG)
    if not images:
        raise DatasetFormatError(f"no {PNG} images in {folder}: expected the {expected}; {folder_listing(folder)}")
    return images


def _defect_dirs(test_dir: Path, root: Path, expected: str) -> list[Path]:
    """The ``test/<defect>`` folders; ``test/good`` must be among them, since metrics need normal test images."""
    _pngs(test_dir / "good", root, expected)
    return sorted(p for p in test_dir.iterdir() if p.is_dir())


def mvtec_ad(root: str | Path, category: str, split: str) -> list[Sample]:
    """Index MVTec AD (Bergmann et al. CVPR 2019): ``train`` is normal only, ``test`` mixes good and defects.

    The mask of ``test/<defect>/<stem>.png`` is ``ground_truth/<defect>/<stem>_mask.png``; a missing mask
    is an error rather than an all-normal mask, which would silently distort pixel-level metrics.
    """
    _check_split(split, ("train", "test"), "MVTec AD")
    root = Path(root)
    folder = _category_dir(root, category, "mvtec_ad", MVTEC_AD_LAYOUT)
    if split == "train":
        images = _pngs(folder / "train" / "good", root, MVTEC_AD_LAYOUT)
        return [Sample(image, (), 0, "good", category) for image in images]

    samples = []
    for defect_dir in _defect_dirs(folder / "test", root, MVTEC_AD_LAYOUT):
        defect = defect_dir.name
        for image in _pngs(defect_dir, root, MVTEC_AD_LAYOUT):
            if defect == "good":
                samples.append(Sample(image, (), 0, defect, category))
                continue
            mask = folder / "ground_truth" / defect / f"{image.stem}_mask{PNG}"
            if not mask.is_file():
                raise DatasetFormatError(
                    f"anomalous image {image} has no mask: expected {mask} ({MVTEC_AD_LAYOUT}); "
                    f"{folder_listing(mask.parent)}"
                )
            samples.append(Sample(image, (mask,), 1, defect, category))
    return sorted(samples, key=lambda s: s.image)


def mvtec_loco(root: str | Path, category: str, split: str) -> list[Sample]:
    """Index MVTec LOCO AD (Bergmann et al. IJCV 2022): ``train``/``validation`` normal, ``test`` mixed.

    Test defects are ``logical_anomalies`` and ``structural_anomalies``. Each anomalous image has a mask
    folder ``ground_truth/<defect>/<stem>/`` with one PNG per annotated region (pixel values are region ids,
    nonzero = anomalous); the Dataset ORs them into one binary mask.
    """
    _check_split(split, ("train", "validation", "test"), "MVTec LOCO AD")
    root = Path(root)
    folder = _category_dir(root, category, "mvtec_loco", MVTEC_LOCO_LAYOUT)
    if split in ("train", "validation"):
        images = _pngs(folder / split / "good", root, MVTEC_LOCO_LAYOUT)
        return [Sample(image, (), 0, "good", category) for image in images]

    samples = []
    for defect_dir in _defect_dirs(folder / "test", root, MVTEC_LOCO_LAYOUT):
        defect = defect_dir.name
        for image in _pngs(defect_dir, root, MVTEC_LOCO_LAYOUT):
            if defect == "good":
                samples.append(Sample(image, (), 0, defect, category))
                continue
            mask_dir = folder / "ground_truth" / defect / image.stem
            if not mask_dir.is_dir():
                raise DatasetFormatError(
                    f"anomalous image {image} has no mask folder: expected {mask_dir}/*{PNG} ({MVTEC_LOCO_LAYOUT}); "
                    f"{folder_listing(mask_dir.parent)}"
                )
            masks = sorted(p for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() == PNG)
            if not masks:
                raise DatasetFormatError(
                    f"mask folder {mask_dir} of anomalous image {image} holds no {PNG}: expected the "
                    f"{MVTEC_LOCO_LAYOUT}; {folder_listing(mask_dir)}"
                )
            samples.append(Sample(image, tuple(masks), 1, defect, category))
    return sorted(samples, key=lambda s: s.image)


def visa(root: str | Path, category: str, split: str) -> list[Sample]:
    """Index VisA (Zou et al. ECCV 2022) from its official one-class split ``split_csv/1cls.csv``.

    Rows are ``object,split,label,image,mask`` with label ``normal``/``anomaly`` and paths relative to
    ``<root>``. VisA does not name defect types in the split, so anomalies get the defect ``"anomaly"``.
    Errors name the csv line so that a corrupted extraction can be traced to the row that points at it.
    """
    _check_split(split, ("train", "test"), "VisA")
    root = Path(root)
    _category_dir(root, category, "visa", VISA_LAYOUT)
    csv_path = root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise _not_found(csv_path, root, VISA_LAYOUT)

    samples = []
    objects = set()
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing_columns = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_columns:
            raise DatasetFormatError(
                f"{csv_path} lacks columns {missing_columns}: expected the {VISA_LAYOUT}; "
                f"found header: {reader.fieldnames}"
            )
        for row in reader:
            where = f"{csv_path} line {reader.line_num}"
            objects.add(row["object"])
            if row["object"] != category or row["split"] != split:
                continue
            if row["label"] not in ("normal", "anomaly"):
                raise DatasetFormatError(f"{where}: label {row['label']!r} is neither 'normal' nor 'anomaly'")
            image = root / row["image"]
            if not image.is_file():
                raise DatasetFormatError(f"{where}: image {image} not found (expected the {VISA_LAYOUT})")
            if row["label"] == "normal":
                samples.append(Sample(image, (), 0, "good", category))
                continue
            mask = root / row["mask"]
            if not row["mask"] or not mask.is_file():
                raise DatasetFormatError(
                    f"{where}: mask {mask if row['mask'] else '(empty)'} of anomalous image {image} not found "
                    f"(expected the {VISA_LAYOUT})"
                )
            samples.append(Sample(image, (mask,), 1, "anomaly", category))
    if not samples:
        raise DatasetFormatError(
            f"{csv_path} has no {split!r} rows for object {category!r}: expected the {VISA_LAYOUT}; "
            f"objects found: {sorted(objects)}"
        )
    return sorted(samples, key=lambda s: s.image)


def elpv_cells(root: str | Path) -> list[tuple[Path, float, str, int]]:
    """``(image, defect probability, cell type, line number)`` of every line of ``<root>/labels.csv``.

    The probabilities are the experts' 0, 1/3, 2/3 and 1; anything else, a missing image or a short line is
    an error naming the line.
    """
    root = Path(root)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise _not_found(labels, root, ELPV_LAYOUT)
    cells = []
    for number, line in enumerate(labels.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{labels} line {number}"
        if len(fields) != 3:
            raise DatasetFormatError(f"{where}: expected 'path probability type' ({ELPV_LAYOUT}), got {line!r}")
        path, probability, cell_type = fields
        try:
            p = float(probability)
        except ValueError:
            raise DatasetFormatError(f"{where}: probability {probability!r} is not a number") from None
        if not any(abs(p - level) < 1e-6 for level in (0, 1 / 3, 2 / 3, 1)):
            raise DatasetFormatError(f"{where}: probability {probability} is none of 0, 1/3, 2/3, 1")
        image = root / path
        if not image.is_file():
            raise DatasetFormatError(f"{where}: image {image} not found (expected the {ELPV_LAYOUT})")
        cells.append((image, p, cell_type, number))
    if not cells:
        raise DatasetFormatError(f"{labels} lists no cell: expected the {ELPV_LAYOUT}")
    return cells


def elpv(root: str | Path, category: str, split: str) -> list[Sample]:
    """Index ELPV for one cell type (``mono`` or ``poly``, the "category").

    Labels: probability 0 is normal (0), 1 is anomalous (1, defect ``"defective"``), and the experts'
    uncertain 1/3 and 2/3 cells get label -1 with the defect ``"p033"`` / ``"p067"``: they are test cells
    scored and reported on their own (``image_auroc_uncertain``), outside the main metrics. ``train`` is
    the pool of normal cells (k-shot draw and validation); ``test`` the other normal cells
    (``ELPV_TEST_NORMAL_FRACTION``, a fixed seeded draw) and every defective and uncertain cell.
    """
    _check_split(split, ("train", "test"), "ELPV")
    cells = [c for c in elpv_cells(root) if c[2] == category]
    if not cells:
        raise DatasetFormatError(f"{Path(root) / 'labels.csv'} has no cell of type {category!r}: types present "
                                 f"{list_categories(root, 'elpv')}")
    normal = sorted(image for image, p, _, _ in cells if p == 0)
    random.Random(f"{ELPV_SPLIT_SEED}/{category}").shuffle(normal)
    n_test = round(len(normal) * ELPV_TEST_NORMAL_FRACTION)
    if split == "train":
        return [Sample(image, (), 0, "good", category) for image in sorted(normal[n_test:])]
    samples = [Sample(image, (), 0, "good", category) for image in normal[:n_test]]
    for image, p, _, _ in cells:
        if p == 1:
            samples.append(Sample(image, (), 1, "defective", category))
        elif p > 0:
            samples.append(Sample(image, (), -1, f"p{round(100 * p):03d}", category))
    return sorted(samples, key=lambda s: s.image)


LAYOUTS: dict[str, Callable[[str | Path, str, str], list[Sample]]] = {
    "mvtec_ad": mvtec_ad,
    "mvtec_loco": mvtec_loco,
    "visa": visa,
    "elpv": elpv,
}
# What each layout looks like on disk, for error messages.
LAYOUT_DESCRIPTIONS = {"mvtec_ad": MVTEC_AD_LAYOUT, "mvtec_loco": MVTEC_LOCO_LAYOUT, "visa": VISA_LAYOUT,
                       "elpv": ELPV_LAYOUT}
# The folder that marks a category in each layout; it tells categories apart from licence and readme files
# (MVTec) and from split_csv (VisA).
_CATEGORY_MARKER = {"mvtec_ad": "train", "mvtec_loco": "train", "visa": "Data"}


def list_categories(root: str | Path, layout: str) -> list[str]:
    """Category folders present under ``root`` for ``layout`` (``"mvtec_ad"``, ``"mvtec_loco"`` or ``"visa"``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {list(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset root {root} not found: expected the {LAYOUT_DESCRIPTIONS[layout]}; "
                                 f"{folder_listing(root)}")
    if layout == "elpv":  # the cell types named in labels.csv
        return sorted({cell_type for _, _, cell_type, _ in elpv_cells(root)})
    marker = _CATEGORY_MARKER[layout]
    return sorted(p.name for p in root.iterdir() if (p / marker).is_dir())
