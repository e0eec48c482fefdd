"""PPO fine-tuning (Schulman et al. 2017) of the state BC policy with the environment's sparse success reward.

Policy: a Gaussian on the displacement whose mean is the StateMLP output clamped to [-1, 1], with a learned
state-independent log-std, and a Bernoulli on the gripper logit. The mean action (``to_action``, used at
test) is then exactly StateBC's action: fine-tuning starts from the BC policy itself. Critic: a separate
MLP on the same inputs (state features and instruction embedding). No dropout: the log-probability an
update computes must be the one the sampling policy had.

One Lightning fit, two phases:

1. BC (skipped when ``init_ckpt``, a StateBC checkpoint, gives the weights): ``bc_epochs`` epochs of
   ``bc_loss`` on the demonstrations.
2. PPO, one iteration per epoch. ``on_train_epoch_start`` runs ``rollout_episodes`` stochastic episodes in
   ``n_envs`` environments stepped in lockstep (families ``rollout_tasks``, seen split, seeds
   TRAIN_SEED_OFFSET + i: never an evaluation or validation seed) and computes GAE advantages (Schulman et
   al. 2016). Each training step is then one minibatch of the clipped objective (PPO Eq. 7) plus the value
   loss and entropy bonus (Eq. 9), plus ``bc_coef`` times ``bc_loss`` on the demo batch the datamodule
   yields: the BC term keeps the policy near the demonstrations (DAPG's augmented policy gradient,
   Rajeswaran et al. 2018, here with a constant weight). The demo batches thus drive Lightning's automatic
   optimisation loop and feed the BC term, so PPO needs neither manual optimisation nor its own dataset;
   after ``ppo_epochs`` shuffled passes over the rollouts, the epoch's remaining steps return None
   (Lightning skips them). An epoch has as many steps as the demo loader has batches, so that many
   minibatches at most. As in Spinning Up's PPO, the policy (and BC term) stops updating for the rest of
   the iteration once the approximate KL to the sampling policy exceeds 1.5 ``target_kl``, the critic goes
   on: one Adam step of a 512-wide MLP moves the mean by more than the exploration std at learning rates
   that suit BC (measured KL > 10 after one step at 3e-4, 0.03 at 1e-5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Normal

from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import FAMILIES, SLOTS
from vlm_robot_control.language import CACHE_DIR, EMBED_DIM
from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.methods.bc import bc_loss, to_action
from vlm_robot_control.models.state_mlp import state_features

TRAIN_SEED_OFFSET = 30_000_000   # PPO's rollouts (eval seeds 10M + i, val 20M + i)


def gae(rewards: Tensor, values: Tensor, terminated: bool, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over one episode (Schulman et al. 2016, Eq. 16).

    ``rewards`` (T,); ``values`` (T + 1,): V(s_0) .. V(s_T), the last the bootstrap of a truncated
    episode (ignored when ``terminated``). Returns the advantages and the value targets (advantage + V).
    """
    next_values = values[1:].clone()
    if terminated:
        next_values[-1] = 0.0
    deltas = rewards + gamma * next_values - values[:-1]
    advantages = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = deltas[t] + gamma * lam * running
        advantages[t] = running
    return advantages, advantages + values[:-1]


def ppo_clip_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, clip: float) -> Tensor:
    """The negated clipped surrogate (PPO Eq. 7): -mean(min(r A, clip(r, 1 - eps, 1 + eps) A))."""
    ratio = (logp - logp_old).exp()
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()


class PPO(PolicyModule):
    # The last checkpoint is the fine-tuned policy: 20 deterministic validation episodes cannot rank
    # PPO iterations (ties keep the earliest), so "best" would quietly test the first iteration.
    monitor = None

    def __init__(self, net: nn.Module, value_hidden: int = 256, init_ckpt: str | None = None,
                 bc_epochs: int = 20, rollout_tasks: Sequence[str] = ("pick_place",), n_envs: int = 16,
                 rollout_episodes: int = 32, ppo_epochs: int = 4,
                 minibatch_size: int = 256, gamma: float = 0.99, gae_lambda: float = 0.95, clip: float = 0.2,
                 value_coef: float = 0.5, entropy_coef: float = 0.0, bc_coef: float = 0.1, target_kl: float = 0.02,
                 log_std_init: float = -1.5, lr: float = 1e-3, ppo_lr: float = 1e-5, weight_decay: float = 1e-4,
                 log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        """``net``: the policy mean, ``net(state, environment_state, lang) -> (B, 1, 4)`` (a
        ``models.state_mlp.StateMLP`` without dropout, shaped like ``init_ckpt``'s StateBC net);
        ``rollout_tasks``: the families of PPO's own episodes (a setting of the method, like SayCan's
        ``experience_tasks``; ppo.yaml gives the demos' families); ``lr`` is the BC phase's learning rate,
        ``ppo_lr`` the PPO phase's."""
        for family in rollout_tasks:
            if family not in FAMILIES:
                raise ValueError(f"model.init_args.rollout_tasks: {family!r} is not a task family {FAMILIES}")
        super().__init__(lr, weight_decay, log_videos=log_videos, cache_dir=cache_dir)
        self.save_hyperparameters()   # under the CLI, net is recorded as its class_path and init_args
        dropout = [m.p for m in net.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        if dropout:
            raise ValueError(f"model.init_args.net has dropout {dropout[0]}: PPO's policy must have none (the "
                             "log-probability of an update must be the sampling policy's); set its dropout: 0.0")
        self.net = net
        features = 4 + 7 * len(SLOTS) + EMBED_DIM   # state_features and the instruction embedding
        self.critic = nn.Sequential(nn.Linear(features, value_hidden), nn.Tanh(), nn.Linear(value_hidden, value_hidden),
                                    nn.Tanh(), nn.Linear(value_hidden, 1))
        self.log_std = nn.Parameter(torch.full((3,), log_std_init))

    @property
    def bc_epochs(self) -> int:
        return 0 if self.hparams.init_ckpt else self.hparams.bc_epochs

    def setup(self, stage: str) -> None:
        """Start from ``init_ckpt``'s StateBC weights (a resumed fit then restores its own on top)."""
        if stage != "fit" or not self.hparams.init_ckpt:
            return
        state = torch.load(self.hparams.init_ckpt, map_location="cpu", weights_only=True)["state_dict"]
        # The StateBC's net ("model." in checkpoints written before the net became an init argument).
        prefix = "net." if any(k.startswith("net.") for k in state) else "model."
        self.net.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})

    # -- policy and critic --------------------------------------------------------------------------
    def distribution(self, batch: dict[str, Tensor]) -> tuple[Normal, Bernoulli]:
        out = self.net(batch["state"], batch["environment_state"], batch["lang"])[:, 0]
        return Normal(out[:, :3].clamp(-1, 1), self.log_std.exp().expand(len(out), 3)), Bernoulli(logits=out[:, 3])

    @staticmethod
    def log_prob(dists: tuple[Normal, Bernoulli], action: Tensor) -> Tensor:
        """log pi(a | s) of actions (B, 4): the displacement as sampled (before the env clips it), gripper +-1."""
        motion, grip = dists
        return motion.log_prob(action[:, :3]).sum(-1) + grip.log_prob((action[:, 3] > 0).float())

    def state_value(self, batch: dict[str, Tensor]) -> Tensor:
        x = torch.cat([state_features(batch["state"], batch["environment_state"]), batch["lang"]], 1)
        return self.critic(x).squeeze(-1)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return bc_loss(self.net(batch["state"], batch["environment_state"], batch["lang"]), batch["action"])

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """The mean action (deterministic), as StateBC acts."""
        return to_action(self.net(batch["state"], batch["environment_state"], batch["lang"]))

    def ppo_loss(self, minibatch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The policy loss (clipped surrogate - entropy_coef * entropy; PPO Eq. 9 without the value term),
        the value MSE, and detached statistics (approx_kl = E[(r - 1) - log r], Schulman's low-variance
        estimator). Advantages are not normalised: with a 0/1 reward they are O(1) already, and normalising
        a minibatch without any success would blow the critic's noise up to unit advantages."""
        h = self.hparams
        dists = self.distribution(minibatch)
        logp = self.log_prob(dists, minibatch["action"])
        surrogate = ppo_clip_loss(logp, minibatch["logp_old"], minibatch["advantage"], h.clip)
        value_loss = F.mse_loss(self.state_value(minibatch), minibatch["return"])
        entropy = (dists[0].entropy().sum(-1) + dists[1].entropy()).mean()
        log_ratio = logp - minibatch["logp_old"]
        stats = {"policy_loss": surrogate, "value_loss": value_loss, "entropy": entropy,
                 "approx_kl": (log_ratio.exp() - 1 - log_ratio).mean(),
                 "clip_fraction": ((log_ratio.exp() - 1).abs() > h.clip).float().mean()}
        return surrogate - h.entropy_coef * entropy, value_loss, {key: value.detach() for key, value in stats.items()}

    # -- experience ------------------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self, seeds: list[int]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Stochastic episodes, ``n_envs`` at a time in lockstep. Returns the transitions (observation,
        action, logp_old, advantage, return) and per episode the success and the discounted return."""
        families = list(self.hparams.rollout_tasks)
        transitions, success, returns = defaultdict(list), [], []
        for start in range(0, len(seeds), self.hparams.n_envs):
            group = seeds[start:start + self.hparams.n_envs]
            envs = [TabletopEnv(families[(start + n) % len(families)]) for n in range(len(group))]
            obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, group)]
            self.begin(envs)
            episodes = [defaultdict(list) for _ in envs]
            active = list(range(len(envs)))
            while active:
                batch = self.observation_batch([obs[i] for i in active], active)
                dists = self.distribution(batch)
                action = torch.cat([dists[0].sample(), dists[1].sample()[:, None] * 2 - 1], 1)
                step = {**batch, "action": action, "logp_old": self.log_prob(dists, action),
                        "value": self.state_value(batch)}
                still = []
                for n, i in enumerate(active):
                    for key, value in step.items():
                        episodes[i][key].append(value[n])
                    obs[i], reward, terminated, truncated, _ = envs[i].step(action[n].cpu().numpy())
                    episodes[i]["reward"].append(reward)
                    episodes[i]["terminated"] = terminated
                    if not (terminated or truncated):
                        still.append(i)
                active = still
            bootstrap = self.state_value(self.observation_batch(obs, range(len(envs))))   # V(s_T) if truncated
            for i, episode in enumerate(episodes):
                rewards = torch.tensor(episode.pop("reward"), device=self.device)
                values = torch.cat([torch.stack(episode.pop("value")), bootstrap[i:i + 1]])
                terminated = episode.pop("terminated")
                advantage, value_target = gae(rewards, values, terminated, self.hparams.gamma, self.hparams.gae_lambda)
                for key, value in episode.items():
                    transitions[key].append(torch.stack(value))
                transitions["advantage"].append(advantage)
                transitions["return"].append(value_target)
                success.append(float(terminated))
                returns.append(float(terminated) * self.hparams.gamma ** (len(rewards) - 1))
            for env in envs:
                env.close()
        buffer = {key: torch.cat(value) for key, value in transitions.items()}
        return buffer, torch.tensor(success), torch.tensor(returns)

    # -- Lightning -------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        h = self.hparams
        ppo = self.current_epoch >= self.bc_epochs
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = h.ppo_lr if ppo else h.lr
        if not ppo:
            return
        first = TRAIN_SEED_OFFSET + (self.current_epoch - self.bc_epochs) * h.rollout_episodes
        self.buffer, success, returns = self.collect(list(range(first, first + h.rollout_episodes)))
        n = len(self.buffer["action"])
        self.minibatches = [rows for _ in range(h.ppo_epochs) for rows in torch.randperm(n).split(h.minibatch_size)]
        self.policy_frozen, self.policy_updates = False, 0
        self.log_dict({"train/episode_success": success.mean(), "train/return": returns.mean(),
                       "train/transitions": float(n)})

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        if self.current_epoch < self.bc_epochs:
            return super().training_step(batch, batch_idx)
        if batch_idx >= len(self.minibatches):
            return None   # ppo_epochs passes over this iteration's rollouts are done
        rows = self.minibatches[batch_idx].to(self.device)
        policy_loss, value_loss, stats = self.ppo_loss({key: value[rows] for key, value in self.buffer.items()})
        self.log_dict({f"train/{key}": value for key, value in stats.items()}, batch_size=len(rows))
        if stats["approx_kl"] > 1.5 * self.hparams.target_kl:
            self.policy_frozen = True   # too far from the sampling policy: only the critic learns on
        loss = self.hparams.value_coef * value_loss
        if not self.policy_frozen:
            bc = self.loss(batch)
            self.log("train/bc_loss", bc, batch_size=len(batch["state"]))
            self.policy_updates += 1
            loss = loss + policy_loss + self.hparams.bc_coef * bc
        return loss

    def on_train_epoch_end(self) -> None:
        if self.current_epoch >= self.bc_epochs:
            self.log("train/policy_updates", float(self.policy_updates))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Plain AdamW: the two phases set their own learning rates (``lr``, then ``ppo_lr``)."""
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
