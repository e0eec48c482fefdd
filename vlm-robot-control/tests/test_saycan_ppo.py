"""SayCan (language scores, success labels, skills, planner) and PPO (GAE, clipped loss, update), then
``fit`` + ``test`` through the CLI for both configs on tiny settings."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vlm_robot_control.cli import main
from vlm_robot_control.env.scene import BLOCK_HALF
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import COLOUR_NAMES, SLOT_INDEX, SLOTS, TEMPLATES
from vlm_robot_control.language import SentenceEncoder
from vlm_robot_control.methods.bc import StateBC
from vlm_robot_control.methods.ppo import PPO, gae, ppo_clip_loss
from vlm_robot_control.methods.saycan import (
    SKILLS,
    PickPlaceSkill,
    SayCan,
    in_bowl,
    language_scores,
    placed,
    skill_label,
    skill_text,
)
from vlm_robot_control.models.affordance import AffordanceValue
from vlm_robot_control.models.state_mlp import POSITION_SCALE, StateMLP

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One data cache for the module: embeddings (and demos) computed once."""
    return tmp_path_factory.mktemp("cache")


# -- SayCan -----------------------------------------------------------------------------------------
def test_language_scores_prefer_the_matching_skill_for_put_all(cache_dir):
    encoder = SentenceEncoder(cache_dir=cache_dir / "embeddings")
    skills = encoder.encode([skill_text(s) for s in SKILLS])
    instructions = [t.format(pick=f"{a} block", place=f"{b} bowl") for t in TEMPLATES["put_all"] for a, b in SKILLS]
    embedded = encoder.encode(instructions)
    p = language_scores(embedded, skills, tau=0.01)
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)))
    match = torch.arange(len(SKILLS)).repeat(len(TEMPLATES["put_all"]))
    swapped = torch.tensor([SKILLS.index((b, a)) for a, b in SKILLS]).repeat(len(TEMPLATES["put_all"]))
    rows = torch.arange(len(p))
    p_match = p[rows, match]
    # The matching skill beats every other skill but its role-swapped twin (blue -> red for red -> blue:
    # a sentence encoder hardly tells roles apart), and that one in most instructions.
    others = p.clone()
    others[rows, match] = others[rows, swapped] = 0
    assert (p_match > others.max(1).values).all()
    assert (p_match >= p[rows, swapped]).float().mean() > 0.85
    assert p_match.min() > 0.1 and p_match.mean() > 0.5
    # A lower temperature sharpens the same ranking.
    assert (language_scores(embedded, skills, tau=0.005)[rows, match] > p_match).float().mean() > 0.85


def test_success_label_on_hand_built_situations():
    colours = ["red", "red", "blue"]
    bowl = np.array([0.05, 0.0, 0.0])
    inside, outside = np.array([0.06, 0.01, BLOCK_HALF]), np.array([-0.1, 0.1, BLOCK_HALF])
    start = np.stack([inside, outside, outside])
    free = [False] * 3
    before = in_bowl(colours, start, free, bowl, "red")
    assert before.tolist() == [True, False, False]
    red_moved_in = np.stack([inside, inside + [0.0, -0.02, 0.0], outside])
    assert skill_label(before, in_bowl(colours, red_moved_in, free, bowl, "red")) == 1.0
    # still between the fingers, lifted above the rim, or a block of another colour: no success
    assert skill_label(before, in_bowl(colours, red_moved_in, [False, True, False], bowl, "red")) == 0.0
    lifted = np.stack([inside, inside + [0.0, 0.0, 0.06], outside])
    assert skill_label(before, in_bowl(colours, lifted, free, bowl, "red")) == 0.0
    blue_moved_in = np.stack([inside, outside, inside])
    assert skill_label(before, in_bowl(colours, blue_moved_in, free, bowl, "red")) == 0.0
    # the block that was already there does not count; taking it out is no success either
    assert skill_label(before, before) == 0.0
    assert skill_label(before, in_bowl(colours, np.stack([outside] * 3), free, bowl, "red")) == 0.0
    assert not in_bowl(colours, red_moved_in, free, None, "red").any()   # no bowl of that colour


def test_affordance_features_read_the_skill_colours_slots():
    state = torch.zeros(1, len(SLOTS), 4)
    red_block, blue_bowl = torch.tensor([0.1, 0.0, BLOCK_HALF]), torch.tensor([-0.1, 0.05, 0.0])
    state[0, SLOT_INDEX[("block", "red", 1)]] = torch.cat([red_block, torch.ones(1)])
    state[0, SLOT_INDEX[("bowl", "blue", 0)]] = torch.cat([blue_bowl, torch.ones(1)])
    value = AffordanceValue()
    colour = {c: torch.tensor([COLOUR_NAMES.index(c)]) for c in ("red", "blue", "green")}
    red_in_blue = value.features(state.view(1, -1), colour["red"], colour["blue"])[0]
    blocks, bowl = red_in_blue[:27].view(3, 9), red_in_blue[27:]
    assert blocks[:, 0].tolist() == [0.0, 1.0, 0.0] and (blocks[[0, 2]] == 0).all()   # instance 1 only
    torch.testing.assert_close(blocks[1, 4:7], (red_block - blue_bowl) / POSITION_SCALE)
    torch.testing.assert_close(blocks[1, 7:], torch.tensor([0.0, float(torch.dist(red_block[:2], blue_bowl[:2]))
                                                            / POSITION_SCALE]))
    torch.testing.assert_close(bowl, torch.cat([torch.ones(1), blue_bowl / POSITION_SCALE]))
    assert (value.features(state.view(1, -1), colour["green"], colour["blue"])[0, :27] == 0).all()   # no green
    assert (value.features(state.view(1, -1), colour["red"], colour["green"])[0, 27:] == 0).all()   # no green bowl


def test_scripted_skill_succeeds_when_possible_and_ends_at_once_when_not():
    env = TabletopEnv("pick_place")
    env.reset(seed=0)
    (block, target), = env.task.goals
    skill = (env.task.objects[block][1], env.task.objects[target][1])
    missing = next(c for _, c in SKILLS if c not in {c for _, c in env.task.objects})
    impossible = PickPlaceSkill(env, (skill[0], missing))
    assert impossible.block is None and impossible.finished()
    before, run = placed(env, skill), PickPlaceSkill(env, skill)
    assert run.block == block
    while not run.finished():
        info = env.step(run.act())[4]
    assert run.steps < 100 and skill_label(before, placed(env, skill)) == 1.0
    assert info["is_success"]   # the env agrees: the task is solved
    assert PickPlaceSkill(env, skill).finished()   # nothing left to move: the same skill cannot run again
    env.close()


def test_planner_takes_the_best_skill_unless_done_scores_higher():
    torch.manual_seed(0)
    states = torch.rand(3, 120)
    p_lang = torch.zeros(3, len(SKILLS))
    p_lang[[0, 1, 2], [5, 17, 30]] = 1.0
    assert SayCan(AffordanceValue(), done_score=0.0).plan(states, p_lang).tolist() == [5, 17, 30]   # V > 0 everywhere
    assert SayCan(AffordanceValue(), done_score=1.0).plan(states, p_lang).tolist() == [-1, -1, -1]


# -- PPO --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("terminated", [True, False])
def test_gae_matches_the_brute_force_sum(terminated):
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.rand(7, generator=g), torch.rand(8, generator=g)
    gamma, lam = 0.9, 0.8
    nxt = [values[t + 1].item() if t < 6 or not terminated else 0.0 for t in range(7)]
    deltas = [rewards[t].item() + gamma * nxt[t] - values[t].item() for t in range(7)]
    expected = torch.tensor([sum((gamma * lam) ** k * deltas[t + k] for k in range(7 - t)) for t in range(7)])
    advantages, returns = gae(rewards, values, terminated, gamma, lam)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values[:-1])
    if terminated:   # lambda = 1: Monte-Carlo returns
        mc = torch.tensor([sum(gamma ** k * rewards[t + k].item() for k in range(7 - t)) for t in range(7)])
        torch.testing.assert_close(gae(rewards, values, True, gamma, 1.0)[1], mc)


def test_ppo_clip_loss_on_a_hand_example():
    logp = torch.tensor([math.log(1.5), math.log(1.5), math.log(0.5), math.log(0.5)], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss = ppo_clip_loss(logp, torch.zeros(4), advantages, clip=0.2)
    # min(r A, clip(r) A) = [1.2 (clipped), -1.5, 0.5, -0.8 (clipped)]
    torch.testing.assert_close(loss, torch.tensor(-(1.2 - 1.5 + 0.5 - 0.8) / 4))
    loss.backward()   # clipped terms give no gradient; the others -r A / 4
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, 1.5 / 4, -0.5 / 4, 0.0]))


def test_ppo_update_raises_the_log_prob_of_an_advantaged_action():
    """One observation, two actions mirrored about the mean (closing vs opening): the one with the positive
    advantage gains probability, the other loses it."""
    torch.manual_seed(0)
    policy = PPO(StateMLP(hidden=32, layers=1, dropout=0.0), value_hidden=16)
    batch = {"state": torch.rand(1, 4).repeat(2, 1) * 0.2, "environment_state": torch.rand(1, 120).repeat(2, 1) * 0.2,
             "lang": torch.nn.functional.normalize(torch.randn(1, 384), dim=1).repeat(2, 1)}
    with torch.no_grad():
        dists = policy.distribution(batch)
        offset = 0.3 * torch.randn(3)
        action = torch.stack([torch.cat([dists[0].mean[0] + offset, torch.ones(1)]),
                              torch.cat([dists[0].mean[0] - offset, -torch.ones(1)])])
        logp_old = policy.log_prob(dists, action)
    minibatch = {**batch, "action": action, "logp_old": logp_old, "advantage": torch.tensor([1.0, -1.0]),
                 "return": torch.zeros(2)}
    optimiser = torch.optim.SGD(policy.parameters(), lr=1e-5)   # small steps: larger ones overshoot
    for _ in range(3):
        policy_loss, value_loss, stats = policy.ppo_loss(minibatch)
        optimiser.zero_grad()
        (policy_loss + value_loss).backward()
        optimiser.step()
    with torch.no_grad():
        logp = policy.log_prob(policy.distribution(batch), action)
    assert logp[0] > logp_old[0] + 0.01 and logp[1] < logp_old[1] - 0.01
    assert stats["approx_kl"] > 0


def test_ppo_starts_from_a_state_bc_checkpoint(tmp_path):
    bc = StateBC(StateMLP(hidden=32, layers=1))
    torch.save({"state_dict": bc.state_dict()}, tmp_path / "bc.ckpt")
    policy = PPO(StateMLP(hidden=32, layers=1, dropout=0.0), init_ckpt=str(tmp_path / "bc.ckpt"))
    assert policy.bc_epochs == 0
    policy.setup("fit")
    for key, value in bc.net.state_dict().items():
        assert torch.equal(policy.net.state_dict()[key], value), key


def test_ppo_refuses_a_policy_with_dropout():
    with pytest.raises(ValueError, match="model.init_args.net has dropout 0.1"):
        PPO(StateMLP(hidden=32, layers=1, dropout=0.1))


# -- the CLI ----------------------------------------------------------------------------------------
def fit_and_test(tmp_path: Path, monkeypatch, config: str, cache_dir: Path, *overrides: str) -> Path:
    """``fit --test_after_fit`` in tmp_path; returns the run directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "vlm-robot-control", "fit", "--config", str(CONFIGS / config), "--trainer.max_epochs=1",
        "--trainer.check_val_every_n_epoch=1", "--trainer.log_every_n_steps=1", "--model.init_args.log_videos=0",
        "--data.init_args.train_episodes=2",
        "--data.init_args.val_episodes=1", "--data.init_args.eval_episodes=1", "--data.init_args.eval_batch=2",
        "--data.init_args.eval_splits=[seen]", f"--data.init_args.cache_dir={cache_dir}", "--test_after_fit=true",
        *overrides])
    main()
    run = tmp_path / "runs" / "vlm-robot-control" / config.removesuffix(".yaml") / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stage"] == "test" and 0.0 <= metrics["metrics"]["test/success_rate_seen"] <= 1.0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


def scalar_tags(run: Path) -> set[str]:
    tags = set()
    for events in run.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_cli_fit_and_test_saycan(tmp_path, monkeypatch, cache_dir):
    run = fit_and_test(tmp_path, monkeypatch, "saycan.yaml", cache_dir, "--model.init_args.experience_episodes=5",
                       "--model.init_args.skills_per_episode=2", "--data.init_args.tasks=[pick_place]",
                       "--data.init_args.eval_tasks=[put_all]")
    assert {"train/value_loss", "val/value_accuracy", "val/success_rate", "experience/tries"} <= scalar_tags(run)


def test_cli_fit_and_test_ppo(tmp_path, monkeypatch, cache_dir):
    run = fit_and_test(tmp_path, monkeypatch, "ppo.yaml", cache_dir, "--trainer.max_epochs=2",
                       "--model.init_args.bc_epochs=1", "--model.init_args.net.init_args.hidden=32",
                       "--model.init_args.net.init_args.layers=1",
                       "--model.init_args.n_envs=2", "--model.init_args.rollout_episodes=2",
                       "--model.init_args.minibatch_size=64", "--data.init_args.batch_size=32")
    tags = scalar_tags(run)
    assert {"train/loss", "train/episode_success", "train/return", "train/approx_kl", "train/policy_loss",
            "train/value_loss", "train/policy_updates"} <= tags
