"""ELPV: the loader on a tiny hand-written folder in the package's layout (labels.csv + images/), the fixed
split, the uncertain cells reported apart, the missing-extra error, and a run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fewshot_anomaly.cli import cli as project_cli
from fewshot_anomaly.data import datamodule
from fewshot_anomaly.data.datamodule import ELPV
from fewshot_anomaly.data.formats import elpv, list_categories
from fewshot_anomaly.methods.module import AnomalyModule
from shared_utils.datasets import DatasetFormatError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# (probability as written in the dataset's labels.csv, type) per cell: 8 normal + 3 defective + 2 uncertain
# mono cells, 6 normal + 2 defective + 1 uncertain poly cells.
CELLS = ([("0.0", "mono")] * 8 + [("1.0", "mono")] * 3
         + [("0.3333333333333333", "mono"), ("0.6666666666666666", "mono")]
         + [("0.0", "poly")] * 6 + [("1.0", "poly")] * 2 + [("0.3333333333333333", "poly")])


def write_elpv(root: Path, cells=CELLS, size: int = 24) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, (probability, cell_type) in enumerate(cells, start=1):
        name = f"images/cell{i:04d}.png"
        gray = rng.integers(60, 120, (size, size), dtype=np.uint8)  # 8-bit grayscale, as ELPV ships
        if float(probability) > 0:
            gray[size // 2, :] = 255  # a "crack"
        assert cv2.imwrite(str(root / name), gray)
        lines.append(f"{name}  {probability}                 {cell_type}")  # the file's column padding
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_index_split_and_labels(tmp_path: Path) -> None:
    root = write_elpv(tmp_path / "elpv")
    assert list_categories(root, "elpv") == ["mono", "poly"]
    train, test = elpv(root, "mono", "train"), elpv(root, "mono", "test")
    assert len(train) == 4 and all(s.label == 0 and s.masks == () for s in train)  # half the 8 normal cells
    assert sorted(s.defect for s in test) == ["defective"] * 3 + ["good"] * 4 + ["p033", "p067"]
    assert {s.label for s in test if s.defect.startswith("p0")} == {-1}
    assert not {s.image for s in train} & {s.image for s in test}
    # Fixed: the split does not depend on anything but the file (same result on a second index).
    assert elpv(root, "mono", "test") == test


def test_datamodule_k_shot_and_validation_from_the_training_pool(tmp_path: Path) -> None:
    root = write_elpv(tmp_path / "elpv")
    data = ELPV(root=str(root), k_shot=1, val_images=2, image_size=16)
    splits = data.splits()
    assert len(splits["train"]) == 2 and len(splits["val"]) == 4  # 1 + 2 per type
    test_images = {s.image for s in splits["test"]}
    assert not test_images & {s.image for s in splits["train"] + splits["val"]}
    item = data.test_dataloader().dataset[0]
    assert item["image"].shape == (3, 16, 16)  # grayscale replicated to 3 channels
    assert bool((item["image"][0] == item["image"][1]).all() and (item["image"][1] == item["image"][2]).all())


@pytest.mark.parametrize("line, message", [
    ("images/cell0001.png 0.5 mono", "none of 0, 1/3, 2/3, 1"),
    ("images/cell0001.png 0.0", "expected 'path probability type'"),
    ("images/missing.png 0.0 mono", "not found"),
    ("images/cell0001.png zero mono", "is not a number"),
])
def test_malformed_labels_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    root = write_elpv(tmp_path / "elpv")
    labels = root / "labels.csv"
    labels.write_text(labels.read_text() + line + "\n")
    with pytest.raises(DatasetFormatError, match=message) as err:
        elpv(root, "mono", "test")
    assert f"{labels} line {len(CELLS) + 1}" in str(err.value)


def test_missing_extra_names_it(monkeypatch) -> None:
    monkeypatch.setattr(datamodule.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetFormatError, match=r"\[elpv\].*elpv-dataset"):
        ELPV().splits()


def test_padim_on_elpv_layout_reports_uncertain_apart(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = write_elpv(tmp_path / "elpv", size=32)
    project_cli(["fit", "--config", str(CONFIGS / "padim.yaml"), "--config", str(CONFIGS / "elpv.yaml"),
                 f"--data.init_args.root={root}", "--data.init_args.val_images=1", "--data.init_args.image_size=32",
                 "--test_after_fit=true"])
    metrics = json.loads(Path("runs/fewshot-anomaly/padim/version_0/metrics.json").read_text())["metrics"]
    for category in ("mono", "poly"):
        assert 0 <= metrics[f"test/{category}/image_auroc"] <= 1
        assert 0 <= metrics[f"test/{category}/image_auroc_uncertain"] <= 1
        assert 0 <= metrics[f"test/{category}/image_auroc_p033"] <= 1
    assert "test/poly/image_auroc_p067" not in metrics  # no 2/3 poly cell in the fixture
    assert metrics["test/image_auroc_p067"] == metrics["test/mono/image_auroc_p067"]  # the mean of what exists
    assert np.isnan(metrics["test/pixel_auroc"]) and np.isnan(metrics["test/aupro"])  # no masks


class ScoreIsMean(torch.nn.Module):
    """Image score = the image's mean: lets a test pick each image's score."""

    def forward(self, images):
        return images.mean(1), images.mean((1, 2, 3))


def test_uncertain_auroc_hand_worked() -> None:
    module = AnomalyModule(ScoreIsMean(), categories=["mono"])
    scores = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.15, 0.25, 0.35])
    batch = {"image": scores[:, None, None, None].expand(-1, 3, 2, 2).clone(), "mask": torch.zeros(7, 2, 2),
             "label": torch.tensor([0, 0, 0, 1, -1, -1, -1]), "category": ["mono"] * 7,
             "defect": ["good"] * 3 + ["defective", "p033", "p067", "p067"]}
    module._evaluate(batch, "val")
    values = module._uncertain_auroc("mono")
    # normals 0.1 0.2 0.3; p033 0.15 beats 1 of 3 pairs; p067 0.25, 0.35 beat 2 and 3 of 3.
    assert values == pytest.approx({"image_auroc_uncertain": 6 / 9, "image_auroc_p033": 1 / 3,
                                    "image_auroc_p067": 5 / 6})
    assert module._metrics["mono"].compute()["image_auroc"] == 1.0  # the uncertain images are not in it


def test_bench_renders_the_elpv_table_once_it_exists(tmp_path: Path) -> None:
    from shared_utils.bench import Store, load_bench, parse_args

    bench = load_bench(Path(__file__).resolve().parents[1] / "bench.py")
    store = Store(tmp_path / "bench.json")
    store.data = {k: v for k, v in Store(Path(bench.__file__).parent / "bench.json").data.items() if "/" not in k}
    args = parse_args(bench.METHODS, [])
    assert "ELPV" not in bench.render(args, store)  # a clone that never ran --real renders without it
    metrics = {f"test/{c}/{m}": 0.5 for c in ("mono", "poly") for m in bench.REAL_METRICS} | {"test/image_auroc": 0.5}
    shot = {"metrics": metrics, "fit_seconds": 1.0, "test_seconds": 2.0, "n_train": 714, "n_test": 2117}
    store.data["elpv/padim"] = {"shots": {k: shot for k in bench.REAL_SHOTS}, "date": "2026-12-06"}
    text = bench.render(args, store)
    assert "## Real data: ELPV" in text
    assert "| padim | 16 | 0.500 | 0.500 | 0.500 | 0.500 | 0.500 | 0.500 | 0.500 | 1 | 2 |" in text
