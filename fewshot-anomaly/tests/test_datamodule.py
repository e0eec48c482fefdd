"""The datamodule checks its dataset in setup(), before any training: errors name the root."""

from pathlib import Path

import pytest

from fewshot_anomaly.cli import cli as project_cli
from fewshot_anomaly.data.datamodule import MVTecAD, VisA
from fewshot_anomaly.data.synthetic import ensure_synthetic
from shared_utils.datasets import DatasetFormatError


@pytest.mark.parametrize("make_root", ["empty", "missing", "one level off"])
@pytest.mark.parametrize("datamodule", [MVTecAD, VisA])
def test_category_all_on_a_bad_root_names_it_in_setup(datamodule, make_root, tmp_path: Path) -> None:
    root = tmp_path / "data"
    if make_root == "empty":
        root.mkdir()
    elif make_root == "one level off":  # a single category's folder given as the root
        (root / "train" / "good").mkdir(parents=True)
    data = datamodule(root=str(root), category="all")
    with pytest.raises(DatasetFormatError) as err:
        data.setup("fit")
    message = str(err.value)
    assert str(root) in message
    assert "layout" in message  # what was expected
    assert "found" in message  # and what is there


def test_cli_stops_on_an_empty_root_before_training(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "empty"
    root.mkdir()
    configs = Path(__file__).resolve().parents[1] / "configs"
    with pytest.raises(SystemExit) as exit_info:
        project_cli(["fit", "--config", str(configs / "padim.yaml"), "--config", str(configs / "mvtec.yaml"),
              f"--data.init_args.root={root}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: no category folder in dataset root") and str(root) in error
    assert not (tmp_path / "runs").exists()  # no run directory, not even an empty one


def test_setup_indexes_every_split(tmp_path: Path) -> None:
    """A test split broken on disk is reported at setup, not after the model has been fitted."""
    root = ensure_synthetic(tmp_path, image_size=32, n_train=12, n_test_good=2, n_test_per_defect=1)
    for mask in (root / "wood" / "ground_truth" / "hole").iterdir():
        mask.unlink()
    with pytest.raises(DatasetFormatError, match=r"has no mask.*ground_truth/hole"):
        MVTecAD(root=str(root), category="all").setup("fit")
