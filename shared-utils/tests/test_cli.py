"""The collection's CLI contract, driven end to end on the tiny project (tiny_project.py)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from shared_utils.checkpoints import find_checkpoint, latest_run, load_model
from shared_utils.cli import checkpoint_hparams, run_cli
from tiny_project import TinyData, TinyRegressor

CONFIG = {
    "model": {"class_path": "tiny_project.TinyRegressor"},
    "data": {"class_path": "tiny_project.TinyData"},
    "trainer": {"max_epochs": 3, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                "enable_model_summary": False, "log_every_n_steps": 1},
}
EXP = Path("runs/tiny/tinyregressor")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    return tmp_path


def cli(*args: str):
    return run_cli(TinyRegressor, TinyData, project="tiny", args=[args[0], "--config", "tiny.yaml", *args[1:]])


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_fit_then_test_writes_the_run_directory(workdir):
    cli("fit", "--test_after_fit=true")
    run = EXP / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["seed_everything"] == 42
    assert (run / "checkpoints/last.ckpt").is_file() and list(run.glob("events.out.tfevents.*"))
    best = find_checkpoint(run, "best")
    record = metrics(run)
    assert record["stage"] == "test" and Path(record["ckpt"]).name == best.name
    assert set(record["metrics"]) == {"test/loss", "test/mae"} and record["seconds"] >= 0
    # The best checkpoint is the one with the lowest monitored val/loss.
    state = torch.load(find_checkpoint(run, "last"), weights_only=False)
    (cb_state,) = [v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert cb_state["monitor"] == "val/loss" and Path(cb_state["best_model_path"]).name == best.name

    # The saved config reruns the run, into a new directory: version_0 stays as it was.
    before = (run / "metrics.json").read_text()
    run_cli(TinyRegressor, TinyData, project="tiny",
            args=["fit", "--config", str(run / "config.yaml")])
    assert latest_run(EXP).name == "version_1" and (run / "metrics.json").read_text() == before
    torch.testing.assert_close(weights(EXP / "version_1/checkpoints/last.ckpt"), weights(run / "checkpoints/last.ckpt"))

    # Standalone test/validate of the latest run's best checkpoint, each in a run directory of its own.
    cli("test", "--ckpt_path=best")
    cli("validate", "--ckpt_path=last")
    assert metrics(EXP / "version_2")["metrics"] == pytest.approx(record["metrics"])
    assert metrics(EXP / "version_3")["stage"] == "validate"
    assert set(metrics(EXP / "version_3")["metrics"]) == {"val/loss"}

    # load_model: the module of a run directory, for inference.
    model = load_model(run)
    assert isinstance(model, TinyRegressor) and not model.training
    torch.testing.assert_close(model.state_dict(), weights(best))


def test_resume_ends_with_the_same_weights(workdir):
    cli("fit", "--trainer.max_epochs=4", "--experiment=straight")
    cli("fit", "--trainer.max_epochs=2", "--experiment=interrupted")
    cli("fit", "--trainer.max_epochs=4", "--experiment=interrupted", "--ckpt_path=last")
    straight, resumed = Path("runs/tiny/straight/version_0"), Path("runs/tiny/interrupted/version_0")
    assert not Path("runs/tiny/interrupted/version_1").exists()  # resumed in its own directory
    assert torch.load(resumed / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 3
    # Dropout and shuffling draw from the restored RNG states: equality is exact.
    for key, value in weights(straight / "checkpoints/last.ckpt").items():
        assert torch.equal(value, weights(resumed / "checkpoints/last.ckpt")[key]), key


def test_resume_without_a_run_says_where_it_looked(workdir):
    with pytest.raises(FileNotFoundError, match="no run under runs/tiny/tinyregressor"):
        cli("fit", "--ckpt_path=last")


@pytest.mark.parametrize("args,expected", [
    (["--model.init_args.hiden=8"], "hiden"),
    (["--trainer.max_epochs=three"], "max_epochs"),
    (["--data.init_args.batch_size=0.5"], "batch_size"),
])
def test_wrong_key_or_type_fails_clearly(workdir, capsys, args, expected):
    with pytest.raises(SystemExit) as exit_info:
        cli("fit", *args)
    assert exit_info.value.code != 0
    assert expected in capsys.readouterr().err
    assert not Path("runs").exists()  # nothing was created by the failing run


def test_wrong_key_in_yaml_file_fails_clearly(workdir, capsys):
    bad = dict(CONFIG, trainer=dict(CONFIG["trainer"], max_epoch=2))
    Path("bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(SystemExit):
        run_cli(TinyRegressor, TinyData, project="tiny", args=["fit", "--config", "bad.yaml"])
    assert "max_epoch" in capsys.readouterr().err


@pytest.mark.slow  # about 30 s: four spawned process groups start
def test_ddp_spawn_on_two_cpu_processes(workdir):
    cli("fit", "--test_after_fit=true", "--trainer.max_epochs=2", "--experiment=single")
    cli("fit", "--test_after_fit=true", "--trainer.max_epochs=2", "--experiment=ddp",
        "--trainer.strategy=ddp_spawn", "--trainer.devices=2")
    single = metrics(Path("runs/tiny/single/version_0"))
    ddp = metrics(Path("runs/tiny/ddp/version_0"))
    assert ddp["stage"] == "test" and set(ddp["metrics"]) == set(single["metrics"])
    # fit and test of the spawned workers wrote into one run directory
    assert Path(ddp["ckpt"]).parent == Path("runs/tiny/ddp/version_0/checkpoints")
    assert not Path("runs/tiny/ddp/version_1").exists()
    assert all(torch.isfinite(torch.tensor(v)) for v in ddp["metrics"].values())


def test_keep_freed_memory_is_accepted_by_glibc():
    import platform

    from shared_utils.cli import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds are a glibc setting")
    assert keep_freed_memory() is True


# -- where runs go ----------------------------------------------------------------------------------


def test_runs_go_to_the_collection_root_from_any_folder_inside_it(workdir, monkeypatch):
    (workdir / "shared-utils").mkdir()
    (workdir / "shared-utils/pyproject.toml").write_text("")
    (workdir / "Makefile").write_text("")
    (workdir / "project").mkdir()
    cli("fit", "--trainer.max_epochs=1")                      # from the root, as `make train`
    monkeypatch.chdir(workdir / "project")
    run_cli(TinyRegressor, TinyData, project="tiny",  # from a project folder
            args=["fit", "--config", "../tiny.yaml", "--trainer.max_epochs=1"])
    assert sorted(p.name for p in (workdir / EXP).iterdir()) == ["version_0", "version_1"]
    assert not (workdir / "project/runs").exists()


def test_default_root_dir_is_honoured(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    cli("fit", "--trainer.max_epochs=1", f"--trainer.default_root_dir={elsewhere}", "--test_after_fit=true")
    run = elsewhere / "tiny/tinyregressor/version_0"
    assert (run / "checkpoints/last.ckpt").is_file() and metrics(run)["stage"] == "test"
    assert not Path("runs").exists()


# -- a checkpoint tested with another config ---------------------------------------------------------


def test_test_time_settings_of_the_config_apply_to_the_checkpoint(workdir, capsys):
    cli("fit", "--trainer.max_epochs=1")
    ckpt = find_checkpoint(EXP / "version_0", "last")
    capsys.readouterr()
    tested = cli("test", f"--ckpt_path={ckpt}", "--model.init_args.mc_samples=8", "--model.init_args.hidden=32")
    # The architecture is the checkpoint's (hidden 16, or the weights would not load); MC samples the config's.
    assert tested.model.hparams.hidden == 16 and tested.model.hparams.mc_samples == 8
    err = capsys.readouterr().err
    assert "test-time settings from the config: mc_samples=8" in err
    assert "ignored from the config: hidden (config 32, checkpoint 16)" in err


def test_another_model_class_than_the_checkpoint_holds_is_an_error(workdir, capsys):
    cli("fit", "--trainer.max_epochs=1")
    ckpt = find_checkpoint(EXP / "version_0", "last")
    with pytest.raises(SystemExit) as exit_info:
        cli("test", f"--ckpt_path={ckpt}", "--model=tiny_project.TinyWide")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds another model" in err and "TinyWide" in err and "Traceback" not in err
    assert sorted(p.name for p in EXP.iterdir()) == ["version_0"]


def test_saved_config_of_a_resumed_run_reruns_from_scratch(workdir):
    cli("fit", "--trainer.max_epochs=1")
    cli("fit", "--trainer.max_epochs=2", "--ckpt_path=last")
    saved = EXP / "version_0/config.yaml"
    assert yaml.safe_load(saved.read_text())["ckpt_path"] is None
    run_cli(TinyRegressor, TinyData, project="tiny", args=["fit", "--config", str(saved)])
    assert (EXP / "version_1/checkpoints/last.ckpt").is_file()
    assert torch.load(EXP / "version_1/checkpoints/last.ckpt", weights_only=True)["epoch"] == 1


# -- failures leave nothing behind and say what is wrong in one line --------------------------------


def test_missing_dataset_is_one_line_and_leaves_no_run(workdir, capsys):
    for subcommand in ("fit", "test"):
        with pytest.raises(SystemExit) as exit_info:
            cli(subcommand, "--data.init_args.root=no_such_dataset")
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == (
            "error: no_such_dataset: expected data.csv, found nothing: no_such_dataset does not exist")
    assert not EXP.exists()  # not even the empty experiment folder


def test_a_user_error_wrapped_by_jsonargparse_is_still_one_line():
    from shared_utils.cli import ConfigFileError, find_user_error

    refused = ConfigFileError("eps=0.03: configs give eps in 1/255 units")
    try:
        try:
            raise refused
        except ConfigFileError as inner:
            raise ValueError("Does not validate against any of the Union subtypes") from inner
    except ValueError as wrapped:
        assert find_user_error(wrapped) is refused
    assert find_user_error(ValueError("a bug")) is None


def test_bad_yaml_names_the_file(workdir, capsys):
    Path("bad.yaml").write_text("model:\n  class_path: tiny_project.TinyRegressor\n  init_args: {hidden: 8\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(TinyRegressor, TinyData, project="tiny", args=["fit", "--config", "bad.yaml"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad.yaml (line 4, column 1): not valid YAML") and "<unicode string>" not in err
    assert not Path("runs").exists()


def test_links_copy_a_setting_from_data_to_model(workdir):
    link = {"data.init_args.batch_size": "model.init_args.hidden"}
    ran = run_cli(TinyRegressor, TinyData, project="tiny", links=link,
                  args=["fit", "--config", "tiny.yaml", "--trainer.max_epochs=1", "--data.init_args.batch_size=8"])
    assert ran.model.hparams.hidden == 8 and ran.datamodule.batch_size == 8


def test_instantiate_links_copy_an_attribute_of_the_built_data(workdir):
    # TinyData.num_features is known once the datamodule exists (a real project: categories found on disk).
    link = {"data.num_features": "model.init_args.hidden"}
    ran = run_cli(TinyRegressor, TinyData, project="tiny", instantiate_links=link,
                  args=["fit", "--config", "tiny.yaml", "--trainer.max_epochs=1"])
    assert ran.model.hparams.hidden == TinyData.num_features
    run = EXP / "version_0"
    # Testing the checkpoint builds the model from the checkpoint's hyperparameters except the linked one.
    ckpt = run / "checkpoints" / "last.ckpt"
    tested = run_cli(TinyRegressor, TinyData, project="tiny", instantiate_links=link,
                     args=["test", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}"])
    assert tested.model.hparams.hidden == TinyData.num_features


def test_default_data_lets_method_configs_leave_the_data_out(workdir):
    # A method config without `data` composes with a data config before or after it; alone, the default data.
    config = {k: v for k, v in CONFIG.items() if k != "data"}
    Path("method.yaml").write_text(yaml.safe_dump(config))
    Path("data.yaml").write_text(yaml.safe_dump({"data": {"class_path": "tiny_project.TinyData",
                                                          "init_args": {"num_samples": 48}}}))
    for configs in (["method.yaml"], ["data.yaml", "method.yaml"], ["method.yaml", "data.yaml"]):
        args = ["fit", *(a for c in configs for a in ("--config", c)), "--trainer.max_epochs=1"]
        ran = run_cli(TinyRegressor, TinyData, project="tiny", default_data="tiny_project.TinyData", args=args)
        assert ran.datamodule.num_samples == (96 if configs == ["method.yaml"] else 48), configs


def test_checkpoint_hparams_compare_tuples_and_lists_as_equal(tmp_path):
    # A checkpoint stores a module's tuple default as a tuple; a YAML config gives the same value as a list.
    hparams = {"_class_path": "tiny_project.TinyRegressor", "hidden": 16, "net": {"depth": (2.0, 38.0, 1.0)}}
    config = {"class_path": "tiny_project.TinyRegressor",
              "init_args": {"hidden": 16, "net": {"depth": [2.0, 38.0, 1.0]}}}
    model, notes = checkpoint_hparams(tmp_path / "x.ckpt", hparams, config)
    assert notes == [] and model["init_args"]["hidden"] == 16
    config["init_args"]["hidden"] = 32
    assert "hidden (config 32, checkpoint 16)" in checkpoint_hparams(tmp_path / "x.ckpt", hparams, config)[1][0]
