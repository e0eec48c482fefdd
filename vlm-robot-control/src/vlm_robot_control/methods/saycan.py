"""SayCan (Ahn et al. 2022, "Do As I Can, Not As I Say"): a language model says which skill is useful,
a value function says which skill can succeed now, and the product picks the next skill.

- Skills: "pick the {c1} block and place it in the {c2} bowl" for the 36 colour pairs, plus "done".
- Say: p_lang(skill | instruction) = softmax over the 36 skills of cos(e(instruction), e(skill text)) / tau,
  e = the MiniLM sentence embedding. In SayCan this is the LLM's likelihood of the skill's text after the
  instruction (p(l_pi | i), Sec. 3). A sentence encoder is the stand-in: it puts "put all the red blocks
  in the blue bowl" near "... red block ... blue bowl", but it knows neither roles (red->blue and blue->red
  score alike) nor what "sort the blocks by colour" asks for (same-colour skills score below the others),
  which an LLM scoring a prompt would; nor is it told the steps taken so far, as SayCan's prompt is: the
  value function alone tracks progress (a placed block makes its skill impossible).
- Can: V(s, skill) in [0, 1] (models/affordance.py), SayCan's affordance p(c_pi | s, l_pi). SayCan learns
  it as the skills' value functions (RL on the skills' success); here it is the Monte-Carlo version,
  trained with BCE on tries the module makes itself before fitting (``collect_experience``): scenes of
  ``experience_tasks`` at random progress (the expert runs a random number of steps), then a chain of
  random skills, each labelled 1 when it put a c1 block in the c2 bowl that was not there before.
- Plan (SayCan Algorithm 1): at every decision point the skill with the highest p_lang * V runs, unless
  the constant ``done_score`` (the LM's probability of "done") is higher; "done" holds still with the
  gripper open until the environment truncates (``rollout`` has no early stop). A skill ends when its
  block is in the bowl or after MAX_STEPS_PER_GOAL steps; then the planner decides again.
- Skills are scripted (SayCan's are BC policies): ScriptedExpert's pick-and-place of the c1 block nearest
  the gripper that is not in the c2 bowl yet, through a view of the env whose task has that one sub-goal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from vlm_robot_control.env.expert import ScriptedExpert
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import COLOUR_NAMES, MAX_STEPS_PER_GOAL, goal_reached
from vlm_robot_control.language import CACHE_DIR
from vlm_robot_control.methods.base import ROLLOUTS, PolicyModule

SKILLS: tuple[tuple[str, str], ...] = tuple((a, b) for a in COLOUR_NAMES for b in COLOUR_NAMES)
EXPERIENCE_SEED_OFFSET = 40_000_000   # scenes of the value function's tries (eval 10M, val 20M, PPO 30M)
HELD_OUT_FRACTION = 0.2               # the last scenes' tries: the value function's validation accuracy
HOLD = np.array([0.0, 0.0, 0.0, -1.0], np.float32)   # no motion, fingers open


def skill_text(skill: tuple[str, str]) -> str:
    return f"pick the {skill[0]} block and place it in the {skill[1]} bowl"


def language_scores(instructions: Tensor, skills: Tensor, tau: float) -> Tensor:
    """(N, K) p_lang: per instruction, softmax over the K skills of cosine similarity / ``tau``."""
    return torch.softmax(F.normalize(instructions, dim=-1) @ F.normalize(skills, dim=-1).T / tau, dim=-1)


def in_bowl(block_colours: Sequence[str], blocks: np.ndarray, held: Sequence[bool], bowl: np.ndarray | None,
            colour: str) -> np.ndarray:
    """Per block (xyz rows): it has ``colour`` and rests in ``bowl`` (xyz; None when there is no such bowl)."""
    if bowl is None:
        return np.zeros(len(blocks), bool)
    return np.array([c == colour and goal_reached("bowl", b, bowl, h) for c, b, h in zip(block_colours, blocks, held)],
                    bool)


def skill_label(before: np.ndarray, after: np.ndarray) -> float:
    """The skill succeeded (1.0): a block of its colour is in its bowl now that was not before (``in_bowl``)."""
    return float(np.any(after & ~before))


def _block_colours(env: TabletopEnv) -> list[str]:
    return [c for kind, c in env.task.objects if kind == "block"]


def _bowl(env: TabletopEnv, colour: str) -> int | None:
    """The object index of the bowl of ``colour``, None when the scene has none."""
    return next((n for n, obj in enumerate(env.task.objects) if obj == ("bowl", colour)), None)


def placed(env: TabletopEnv, skill: tuple[str, str]) -> np.ndarray:
    """``in_bowl`` for the env's blocks: which are of the skill's block colour and in its bowl."""
    blocks, bowl = env.block_positions(), _bowl(env, skill[1])
    xyz = None if bowl is None else env.target_positions()[bowl - len(blocks)]
    return in_bowl(_block_colours(env), blocks, [env.held(b) for b in blocks], xyz, skill[0])


class _OneGoal:
    """The env as ScriptedExpert reads it, with ``(block, bowl)`` as the task's only sub-goal."""

    def __init__(self, env: TabletopEnv, goal: tuple[int, int]) -> None:
        self.env, self.task = env, dataclasses.replace(env.task, goals=[goal])

    def __getattr__(self, name: str):
        return getattr(self.env, name)


class PickPlaceSkill:
    """One skill execution: the expert's pick-and-place of the c1 block nearest the gripper not yet in the c2
    bowl. ``block`` is None when there is no such block or no c2 bowl: the skill cannot run (it ends at once)."""

    def __init__(self, env: TabletopEnv, skill: tuple[str, str]) -> None:
        self.env, self.skill, self.steps, self.block = env, skill, 0, None
        bowl = _bowl(env, skill[1])
        todo = [b for b, (c, done) in enumerate(zip(_block_colours(env), placed(env, skill)))
                if c == skill[0] and not done]
        if bowl is not None and todo:
            distance = np.linalg.norm(env.block_positions()[todo] - env.hand_position(), axis=1)
            self.block = todo[int(np.argmin(distance))]
            self.expert = ScriptedExpert(_OneGoal(env, (self.block, bowl)))

    def finished(self) -> bool:
        return self.block is None or self.steps >= MAX_STEPS_PER_GOAL or bool(placed(self.env, self.skill)[self.block])

    def act(self) -> np.ndarray:
        self.steps += 1
        return self.expert.act()


def _sample_skill(env: TabletopEnv, rng: np.random.Generator) -> int:
    """Half the time any skill (mostly impossible ones), else one whose block and bowl colours are both in
    the scene: the successes and the hard failures (every such block already in that bowl)."""
    if rng.random() < 0.5:
        return int(rng.integers(len(SKILLS)))
    blocks, bowls = set(_block_colours(env)), {c for kind, c in env.task.objects if kind == "bowl"}
    return int(rng.choice([k for k, (a, b) in enumerate(SKILLS) if a in blocks and b in bowls]))


def collect_experience(families: Sequence[str], episodes: int, skills_per_episode: int) -> dict[str, np.ndarray]:
    """The value function's labelled tries: ``environment_state`` (N, 120) before the try, ``skill`` (N,)
    (index into SKILLS), ``label`` (N,) and ``episode`` (N,), N = episodes * skills_per_episode.

    Scene e is family ``e % len(families)``, seed EXPERIENCE_SEED_OFFSET + e; the expert runs a random
    number of steps (up to the episode limit) first, then the skills run one after another in that scene.
    """
    rng = np.random.default_rng(EXPERIENCE_SEED_OFFSET)
    envs = {family: TabletopEnv(family) for family in families}
    rows: dict[str, list] = {"environment_state": [], "skill": [], "label": [], "episode": []}
    for e in range(episodes):
        env = envs[families[e % len(families)]]
        obs, _ = env.reset(seed=EXPERIENCE_SEED_OFFSET + e)
        expert = ScriptedExpert(env)
        for _ in range(rng.integers(env.max_steps)):
            obs = env.step(expert.act())[0]
        for _ in range(skills_per_episode):
            k = _sample_skill(env, rng)
            before, skill = placed(env, SKILLS[k]), PickPlaceSkill(env, SKILLS[k])
            rows["environment_state"].append(obs["environment_state"])
            while not skill.finished():
                obs = env.step(skill.act())[0]
            rows["skill"].append(k)
            rows["label"].append(skill_label(before, placed(env, SKILLS[k])))
            rows["episode"].append(e)
    for env in envs.values():
        env.close()
    return {"environment_state": np.stack(rows["environment_state"]), "skill": np.array(rows["skill"]),
            "label": np.array(rows["label"], np.float32), "episode": np.array(rows["episode"])}


class SayCan(PolicyModule):
    # The planner's language temperature and "done" score: chosen after training, applied at test time.
    test_time_hparams = (*PolicyModule.test_time_hparams, "tau", "done_score")

    def __init__(self, net: nn.Module, tau: float = 0.01, done_score: float = 0.02,
                 experience_tasks: tuple[str, ...] = ("put_all", "sort", "pick_place"), experience_episodes: int = 250,
                 skills_per_episode: int = 6, value_batch: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                 log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        """``net``: the affordance value network, ``net(environment_state, pick colour, place colour) -> (B,)``
        success logits (``models.affordance.AffordanceValue``); ``tau``: softmax temperature of the language
        scores (cosines of these sentences differ by ~0.01); ``done_score``: the constant combined score of
        "done"; ``value_batch``: tries per training step."""
        super().__init__(lr, weight_decay, log_videos=log_videos, cache_dir=cache_dir)
        self.save_hyperparameters()   # under the CLI, net is recorded as its class_path and init_args
        self.net = net
        colours = [[COLOUR_NAMES.index(a), COLOUR_NAMES.index(b)] for a, b in SKILLS]
        self.register_buffer("skill_colours", torch.tensor(colours), persistent=False)   # (36, 2)

    # -- the affordance (value function) ---------------------------------------------------------
    def value_logits(self, environment_state: Tensor, skill: Tensor) -> Tensor:
        pick, place = self.skill_colours[skill].unbind(-1)
        return self.net(environment_state, pick, place)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """BCE of V(s, skill) against the try's success label."""
        return F.binary_cross_entropy_with_logits(self.value_logits(batch["environment_state"], batch["skill"]),
                                                  batch["label"])

    def setup(self, stage: str) -> None:
        """Before fitting: collect the tries (once), the last scenes' tries held out for validation."""
        if stage != "fit" or hasattr(self, "experience"):
            return
        h = self.hparams
        start = time.perf_counter()
        data = collect_experience(h.experience_tasks, h.experience_episodes, h.skills_per_episode)
        self.collection_seconds = time.perf_counter() - start
        held_out = data.pop("episode") >= round((1 - HELD_OUT_FRACTION) * h.experience_episodes)
        tensors = {key: torch.as_tensor(value) for key, value in data.items()}
        self.experience = {key: value[~held_out] for key, value in tensors.items()}
        self.held_out = {key: value[held_out] for key, value in tensors.items()}
        rank_zero_info(f"SayCan: {len(data['label'])} tries ({data['label'].mean():.0%} successes) collected in "
                       f"{self.collection_seconds:.0f} s")

    def on_train_epoch_start(self) -> None:
        self.log_dict({"experience/tries": float(len(self.experience["label"]) + len(self.held_out["label"])),
                       "experience/seconds": self.collection_seconds})

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """The demo batch only counts the step: each step is one random minibatch of tries."""
        rows = torch.randint(len(self.experience["label"]), (self.hparams.value_batch,))
        loss = self.loss({key: value[rows].to(self.device) for key, value in self.experience.items()})
        self.log("train/value_loss", loss, prog_bar=True, batch_size=len(rows))
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """The demos are not SayCan's data (no ``val/loss``): only the rollout jobs run; the value function's
        validation is in ``on_validation_epoch_end``."""
        if dataloader_idx == ROLLOUTS:
            super().validation_step(batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        """``val/value_accuracy`` / ``val/value_loss`` on the held-out tries, then the success rollouts."""
        if hasattr(self, "held_out") and len(self.held_out["label"]):
            batch = {key: value.to(self.device) for key, value in self.held_out.items()}
            logits = self.value_logits(batch["environment_state"], batch["skill"])
            self.log("val/value_loss", F.binary_cross_entropy_with_logits(logits, batch["label"]))
            self.log("val/value_accuracy", ((logits > 0).float() == batch["label"]).float().mean())
        super().on_validation_epoch_end()

    # -- acting: say, can, do ----------------------------------------------------------------------
    def begin(self, envs: Sequence[TabletopEnv]) -> None:
        self._envs = list(envs)
        skills = self.embed([skill_text(s) for s in SKILLS])
        self._p_lang = language_scores(self.embed([env.task.instruction for env in envs]), skills, self.hparams.tau)
        self._skills: list[PickPlaceSkill | None] = [None] * len(envs)
        self._done = [False] * len(envs)

    @torch.no_grad()
    def plan(self, environment_state: Tensor, p_lang: Tensor) -> Tensor:
        """(B,) the skill with the highest p_lang * V per row, or -1 ("done") when ``done_score`` is higher."""
        n, k = p_lang.shape
        affordance = torch.sigmoid(self.value_logits(environment_state.repeat_interleave(k, 0),
                                                     torch.arange(k, device=self.device).repeat(n))).view(n, k)
        score, best = (p_lang * affordance).max(1)
        return torch.where(score > self.hparams.done_score, best, -1)

    def act(self, obs: Sequence[dict], ids: Sequence[int]) -> np.ndarray:
        decide = [n for n, i in enumerate(ids)
                  if not self._done[i] and (self._skills[i] is None or self._skills[i].finished())]
        if decide:
            states = torch.as_tensor(np.stack([obs[n]["environment_state"] for n in decide]), device=self.device)
            for n, k in zip(decide, self.plan(states, self._p_lang[[ids[n] for n in decide]]).tolist()):
                i = ids[n]
                self._done[i] = k < 0
                self._skills[i] = None if k < 0 else PickPlaceSkill(self._envs[i], SKILLS[k])
        # "done", or a skill that cannot run (the planner decides again next step): hold still.
        return np.stack([HOLD if s is None or s.finished() else s.act() for s in (self._skills[i] for i in ids)])
