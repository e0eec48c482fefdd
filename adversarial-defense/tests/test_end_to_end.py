"""Every method from its config, through the CLI (fit, then test the best checkpoint) on tiny generated data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adversarial_defense.cli import cli
from conftest import TINY_SIZES

CONFIGS = Path(__file__).parents[1] / "configs"
DEFENSES = ["standard", "pgd_at", "trades", "fast_at", "ot_at", "input_transform"]
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false"]
# Cheap attacks: the test checks that every metric is computed, not how strong the attacks are.
CHEAP = ["--model.init_args.width=4", "--model.init_args.eps_curve=[0, 8]",
         "--model.init_args.attacks=[{class_path: adversarial_defense.attacks.classification.FGSM},"
         " {class_path: adversarial_defense.attacks.classification.PGD, init_args: {steps: 2}},"
         " {class_path: adversarial_defense.attacks.classification.CW, init_args: {steps: 3}},"
         " {class_path: adversarial_defense.attacks.classification.DeepFool, init_args: {steps: 3}},"
         " {class_path: adversarial_defense.attacks.classification.APGD, init_args: {steps: 3}}]"]


def _run(tmp_path: Path, *args: str) -> dict:
    cli(["fit", *args, *FAST, "--test_after_fit=true", f"--trainer.default_root_dir={tmp_path}"])
    [run] = [p.parent for p in tmp_path.rglob("metrics.json")]
    assert list((run / "checkpoints").glob("best-epoch*.ckpt"))
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("defense", DEFENSES)
def test_defense_on_the_shape_texture_set(defense, tmp_path, cache_dir):
    metrics = _run(tmp_path, "--config", str(CONFIGS / f"{defense}.yaml"), *CHEAP,
                   f"--data.init_args.sizes={json.dumps(TINY_SIZES)}", f"--data.init_args.cache_dir={cache_dir}",
                   "--data.init_args.batch_size=16", "--model.init_args.patch_size=4",
                   "--model.init_args.patch_steps=2")
    assert metrics["stage"] == "test"
    keys = metrics["metrics"]
    for name in ["clean_acc", "robust_acc_fgsm", "robust_acc_pgd", "robust_acc_cw", "robust_acc_deepfool",
                 "robust_acc_apgd", "acc_pgd_eps8", "auac_pgd", "fooling_rate_uap", "patch_success"]:
        assert 0 <= keys[f"test/{name}"] <= 100, name
    assert keys["test/acc_pgd_eps0"] == keys["test/clean_acc"]
    assert ("test/robust_acc_pgd_naive" in keys) == (defense == "input_transform")
