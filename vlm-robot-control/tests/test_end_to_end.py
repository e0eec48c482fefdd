"""The default, state BC, grounded BC and the two bounds through the CLI: fit, then test rollouts.

(pixel_film, cliport, saycan and ppo have theirs in test_pixel_policies.py / test_saycan_ppo.py.)
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from shared_utils.checkpoints import load_model
from vlm_robot_control import cli
from vlm_robot_control.env.tasks import SLOT_INDEX
from vlm_robot_control.evaluation import EVAL_SEED_OFFSET, rollout
from vlm_robot_control.methods.grounded_bc import candidates

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def fit_and_test(config: str, cache_dir: Path, tmp_path: Path, monkeypatch, *extra: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "vlm-robot-control", "fit", f"--config={CONFIGS / f'{config}.yaml'}", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3", "--data.init_args.train_episodes=4", "--data.init_args.val_episodes=2",
        "--data.init_args.eval_episodes=2", "--data.init_args.eval_batch=2",
        "--data.init_args.eval_splits=[seen,unseen_phrasing,distractors]", "--data.init_args.eval_tasks=[pick_place]",
        "--model.init_args.log_videos=1",
        f"--data.init_args.cache_dir={cache_dir}", "--test_after_fit=true", *extra])
    cli.main()
    runs = list((tmp_path / "runs" / "vlm-robot-control").glob("*/version_0"))
    assert len(runs) == 1
    return runs[0]


def test_default_config_is_the_state_bc_config():
    """A link, not a copy: the default cannot drift from the method config it stands for."""
    default = CONFIGS / "default.yaml"
    assert default.is_symlink() and default.resolve() == (CONFIGS / "state_bc.yaml").resolve()


@pytest.mark.parametrize("config", ["state_bc", "grounded_bc", "random", "oracle"])
def test_cli_fit_then_test(config, cache_dir, tmp_path, monkeypatch):
    run = fit_and_test(config, cache_dir, tmp_path, monkeypatch)
    record = json.loads((run / "metrics.json").read_text())
    metrics = record["metrics"]
    assert record["stage"] == "test" and metrics["test/episodes"] == 6.0
    for split in ("seen", "unseen_phrasing", "distractors"):
        rate = metrics[f"test/success_rate_{split}"]
        assert metrics[f"test/success_rate_{split}_ci_low"] <= rate <= metrics[f"test/success_rate_{split}_ci_high"]
    assert 0 < metrics["test/episode_length"] <= 100
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    if config == "oracle":   # the expert as a policy: the upper bound really solves the tasks
        assert metrics["test/success_rate_seen"] == 1.0
    if config == "grounded_bc":
        assert metrics["test/grounding_accuracy"] >= 0.8
    events = EventAccumulator(str(run)).Reload()
    assert "rollouts/seen/strips" in events.Tags()["images"]
    assert "val/success_rate" in events.Tags()["scalars"]
    # The tested checkpoint reloads (class and net from the checkpoint) and acts alone, without a trainer or
    # datamodule (it owns its sentence encoder): the same episodes as the test's.
    policy = load_model(record["ckpt"])
    results, _ = rollout(policy, "pick_place", "seen", [EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 1])
    assert sum(r.success for r in results) / 2 == metrics["test/success_rate_seen"]


def test_grounding_candidates_cover_the_scene():
    red_block, blue_bowl, green_block = (SLOT_INDEX[("block", "red", 0)], SLOT_INDEX[("bowl", "blue", 0)],
                                         SLOT_INDEX[("block", "green", 0)])
    sentences = {c[3] for c in candidates([red_block, blue_bowl, green_block])}
    assert sentences == {"pick the red block and place it in the blue bowl",
                         "pick the green block and place it in the blue bowl",
                         "stack the red block on the green block", "stack the green block on the red block"}


def test_state_bc_pointers_are_hard_and_differentiable():
    from vlm_robot_control.models.state_mlp import StateMLP

    model = StateMLP(hidden=32, layers=1)
    env_state = torch.zeros(2, 120)
    env_state.view(2, 30, 4)[:, [0, 18], 3] = 1.0           # a red block and a red bowl present
    env_state.view(2, 30, 4)[:, 0, :3] = torch.tensor([0.1, 0.0, 0.0125])
    lang = torch.randn(2, 384, requires_grad=True)
    features = torch.zeros(2, 4 + 120 + 90)
    features[:, 4:124] = env_state
    attended = model.attend(features, env_state, lang)
    weights = model.slot_weights(env_state, lang)
    assert torch.allclose(weights[:, :, [0, 18]].sum(-1), torch.ones(2, 2))   # absent slots get nothing
    slot_rows = env_state.view(2, 30, 4)[0, [0, 18]]
    for row in attended.view(2, 2, 7)[..., :4].reshape(-1, 4):   # one object's features, not a blend
        assert any(torch.equal(row, candidate) for candidate in slot_rows)
    attended.sum().backward()
    assert lang.grad is not None and lang.grad.abs().sum() > 0


def test_test_with_a_checkpoint_takes_test_time_settings_from_the_config(cache_dir, tmp_path, monkeypatch, capsys):
    """`test --config --ckpt_path`: data settings and the module's test_time_hparams come from the command line,
    the network stays the checkpoint's (a different net size is reported as ignored)."""
    run = fit_and_test("state_bc", cache_dir, tmp_path, monkeypatch)
    ckpt = json.loads((run / "metrics.json").read_text())["ckpt"]
    monkeypatch.setattr(sys, "argv", [
        "vlm-robot-control", "test", f"--config={CONFIGS / 'state_bc.yaml'}", f"--ckpt_path={ckpt}",
        "--data.init_args.eval_episodes=1", "--data.init_args.eval_splits=[seen]",
        "--data.init_args.eval_tasks=[pick_place]", f"--data.init_args.cache_dir={cache_dir}",
        "--model.init_args.log_videos=0", "--model.init_args.net.init_args.hidden=64"])
    cli.main()
    notes = capsys.readouterr().err
    assert "test-time settings from the config: log_videos=0" in notes and "ignored from the config: net" in notes
    test_run = tmp_path / "runs" / "vlm-robot-control" / "state_bc" / "version_1"
    assert json.loads((test_run / "metrics.json").read_text())["metrics"]["test/episodes"] == 1.0
    assert not EventAccumulator(str(test_run)).Reload().Tags()["images"], "log_videos=0: no rollout images"
