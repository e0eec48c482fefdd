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
CHEAP = ["--model.init_args.width=4", "--model.init_args.eps_curve=[0, 8]", "--model.init_args.clean_epochs=0",
         "--model.init_args.eps_warmup_epochs=0",
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


DETECTION_FAST = ["--model.init_args.weights=null", "--model.init_args.head_channels=16",
                  "--model.init_args.n_iter=2", "--model.init_args.universal_epochs=1",
                  "--model.init_args.universal_batches=1", "--model.init_args.sponge_steps=2",
                  '--data.init_args.sizes={"train": 8, "val": 4, "test": 4}', "--data.init_args.image_size=64",
                  "--data.init_args.batch_size=4"]


@pytest.mark.parametrize("config", ["tog", "nms_aware_at"])
def test_detector_under_tog_and_sponge(config, tmp_path, cache_dir):
    metrics = _run(tmp_path, "--config", str(CONFIGS / f"{config}.yaml"), *DETECTION_FAST,
                   f"--data.init_args.cache_dir={cache_dir / 'scenes'}")["metrics"]
    for name in ["map50", "map50_tog_universal", "candidates", "candidates_sponge", "nms_ms", "nms_ms_sponge",
                 *(f"{m}_{k}" for m in ("map50_tog", "tog_success")
                   for k in ("vanishing", "fabrication", "mislabeling", "untargeted"))]:
        assert f"test/{name}" in metrics, name
    assert metrics["test/candidates"] >= 0 and metrics["test/nms_ms"] >= 0


def test_sponge_config_tests_a_detector_checkpoint(tmp_path, cache_dir):
    _run(tmp_path / "fit", "--config", str(CONFIGS / "tog.yaml"), *DETECTION_FAST,
         f"--data.init_args.cache_dir={cache_dir / 'scenes'}")
    [ckpt] = (tmp_path / "fit").rglob("best-epoch*.ckpt")
    cli(["test", "--config", str(CONFIGS / "sponge.yaml"), *DETECTION_FAST[4:], f"--ckpt_path={ckpt}",
         f"--data.init_args.cache_dir={cache_dir / 'scenes'}", f"--trainer.default_root_dir={tmp_path / 'test'}",
         "--trainer.enable_progress_bar=false"])
    [path] = (tmp_path / "test").rglob("metrics.json")
    metrics = json.loads(path.read_text())["metrics"]
    assert {"test/candidates", "test/candidates_sponge"} <= metrics.keys()
    assert not any(k.startswith("test/map50_tog") for k in metrics)


@pytest.mark.parametrize("adversarial_eps", [0, 8])
def test_reid_under_metric_attacks(adversarial_eps, tmp_path, cache_dir):
    metrics = _run(tmp_path, "--config", str(CONFIGS / "reid.yaml"), "--data.init_args.num_train_ids=6",
                   "--data.init_args.num_test_ids=4", f"--data.init_args.cache_dir={cache_dir / 'market'}",
                   "--data.init_args.ids_per_batch=3", "--data.init_args.instances=2",
                   "--model.init_args.width=8", "--model.init_args.attack_steps=2",
                   f"--model.init_args.adversarial_eps={adversarial_eps}")["metrics"]
    for name in ("rank1", "map", "rank1_push", "map_push", "pull_success"):
        assert 0 <= metrics[f"test/{name}"] <= 100, name


def test_pretrained_classifier_on_the_real_photos(tmp_path):
    cli(["test", "--config", str(CONFIGS / "imagenet_photos.yaml"), "--model.init_args.eps_curve=[0, 1]",
         "--model.init_args.attacks=[{class_path: adversarial_defense.attacks.classification.PGD,"
         " init_args: {eps: 1, alpha: 0.25, steps: 2}}]", "--data.init_args.image_size=96",
         f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"])
    [path] = tmp_path.rglob("metrics.json")
    metrics = json.loads(path.read_text())["metrics"]
    assert metrics["test/clean_acc"] == 100  # the labels are the clean predictions
    assert 0 <= metrics["test/robust_acc_pgd"] <= 100


def test_an_eps_in_image_units_in_a_config_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(CONFIGS / "standard.yaml"), f"--trainer.default_root_dir={tmp_path}",
             "--model.init_args.attacks=[{class_path: adversarial_defense.attacks.classification.FGSM,"
             " init_args: {eps: 0.03}}]"])
    assert exit_info.value.code == 2
    assert "eps=0.03" in capsys.readouterr().err


def test_a_missing_market1501_root_names_the_folder_and_the_layout(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(CONFIGS / "reid.yaml"), "--config", str(CONFIGS / "market1501.yaml"),
             f"--data.init_args.root={tmp_path / 'nowhere'}", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "bounding_box_train" in err
    assert not list(tmp_path.rglob("version_*"))  # a failed run leaves no run directory


def test_the_photos_are_a_test_set_only(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["fit", "--config", str(CONFIGS / "imagenet_photos.yaml"), f"--trainer.default_root_dir={tmp_path}"])
    assert "test set" in capsys.readouterr().err


def test_coco_layout_feeds_the_detector(tmp_path, cache_dir):
    """A COCO root (annotations/instances_<split>.json + <split>/ images), written from generated scenes."""
    import shutil

    from adversarial_defense.data import scenes
    from shared_utils.detection_formats import read_voc, write_coco

    voc = tmp_path / "voc"
    scenes.generate(voc, sizes={"train": 6, "val": 2, "test": 2}, image_size=64)
    coco = tmp_path / "coco"
    for split in ("train", "val"):
        gt = read_voc(voc, split, scenes.CLASSES)
        (coco / split).mkdir(parents=True)
        for image in gt["images"]:
            shutil.copy(voc / "JPEGImages" / image["file_name"], coco / split / image["file_name"])
        write_coco(gt, coco / "annotations" / f"instances_{split}.json")
    metrics = _run(tmp_path / "runs", "--config", str(CONFIGS / "tog.yaml"), *DETECTION_FAST[:6],
                   "--data=adversarial_defense.data.datamodule.CocoDetection", f"--data.init_args.root={coco}",
                   '--data.init_args.splits={"train": "train", "val": "val", "test": "val"}',
                   "--data.init_args.image_size=64", "--data.init_args.batch_size=4",
                   "--model.init_args.tog_kinds=[vanishing]")["metrics"]
    assert "test/map50" in metrics and "test/tog_success_vanishing" in metrics
