"""CLIPort (Shridhar et al., CoRL 2021): pick and place heat maps from the first image, then a scripted primitive.

Training labels come from the demonstrations alone. Per episode: the pick pixel is the hand's xy
at the first frame whose action closes the gripper, the place pixel the hand's xy at the first
frame after it whose action opens it again, both projected into the top camera; the input is the
episode's first image and its instruction. (An episode where the block slipped after the first
grasp gets the slip position as its place label: the expert rarely drops a block, and the
labels stay readable off the demos.) Loss: cross-entropy over the pixels of each heat map
(CLIPort's), the place map conditioned on the demonstrated pick (teacher forcing).

The datamodule hands out batches of frames; CLIPort trains on episodes instead: each frame brings its
episode's first image and hindsight grasp / release positions (``data.datamodule.hindsight_grasp``),
and a batch of frames gives one training row per episode among them, so episodes are drawn in
proportion to their length and ``val/loss`` uses the validation episodes.

Acting (Ravens / CLIPort execute their primitives the same way): when an env has no plan, predict
the pick and place pixels from the current image, map them to table coordinates, and run an
open-loop pick-and-place primitive to them; when it ends without success, plan again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlm_robot_control.env.expert import CLOSE, OPEN, SAFE_Z
from vlm_robot_control.env.scene import BLOCK_HALF, CAMERA_FOVY, CAMERA_HEIGHT
from vlm_robot_control.env.tabletop import MAX_DELTA, TabletopEnv
from vlm_robot_control.language import CACHE_DIR
from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.models.cliport import argmax_pixel
from vlm_robot_control.models.vision import random_shift

PICK_Z = 2 * BLOCK_HALF   # the camera sees a block's top face: pick pixels are projected at that height
PLACE_Z = 0.0             # place pixels: on the table plane (a bowl's floor)
WAYPOINT_TIMEOUT = 30     # control steps before the primitive gives up on an unreachable waypoint


# -- camera geometry ----------------------------------------------------------------------------
def focal_length(size: int) -> float:
    """Focal length in pixels of the ``size`` x ``size`` top camera: (H / 2) / tan(fovy / 2)."""
    return (size / 2) / math.tan(math.radians(CAMERA_FOVY) / 2)


def table_to_pixel(x: np.ndarray | float, y: np.ndarray | float, z: float = 0.0,
                   size: int = 96) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Pinhole projection by the top camera (straight down from ``CAMERA_HEIGHT``) of a point at
    height ``z``: (u, v) = (column, row), pixel centres at integers; column 0 is -x, row 0 is +y."""
    scale = focal_length(size) / (CAMERA_HEIGHT - z)
    centre = (size - 1) / 2
    return centre + scale * x, centre - scale * y


def pixel_to_table(u: np.ndarray | float, v: np.ndarray | float, z: float = 0.0,
                   size: int = 96) -> tuple[np.ndarray | float, np.ndarray | float]:
    """The point at height ``z`` seen at pixel (u, v): the inverse of ``table_to_pixel``."""
    scale = focal_length(size) / (CAMERA_HEIGHT - z)
    centre = (size - 1) / 2
    return (u - centre) / scale, (centre - v) / scale


def to_pixel(xy: np.ndarray, z: float, size: int) -> np.ndarray:
    """(N, 2) table xy -> (N, 2) integer (u, v), clipped to the image."""
    u, v = table_to_pixel(xy[:, 0], xy[:, 1], z, size)
    return np.clip(np.rint(np.stack([u, v], 1)), 0, size - 1).astype(np.int64)


# -- labels ---------------------------------------------------------------------------------------
def episode_rows(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """One row per demo episode among a batch's frames, in episode order: its first image, instruction, and
    the pick and place pixels (the hindsight grasp and release xy projected into the top camera)."""
    if "first_image" not in batch:
        raise ValueError("CLIPort trains on images: set data.init_args.images: true")
    first: dict[int, int] = {}
    for row, episode in enumerate(batch["episode_index"].tolist()):
        first.setdefault(episode, row)
    episodes = sorted(first)
    rows = [first[e] for e in episodes]
    grasp, release = batch["grasp_xy"][rows].cpu().numpy(), batch["release_xy"][rows].cpu().numpy()
    missing = [e for e, xy in zip(episodes, grasp) if np.isnan(xy).any()]
    if missing:
        raise ValueError(f"episode {missing[0]}: no gripper close followed by an open in its actions; CLIPort's "
                         "labels need pick-and-place demos (tasks pick_place, stack, put_all, sort)")
    image = batch["first_image"][rows]
    size, device = image.shape[-1], image.device
    return {"image": image, "lang": batch["lang"][rows],
            "pick": torch.as_tensor(to_pixel(grasp, PICK_Z, size), device=device),
            "place": torch.as_tensor(to_pixel(release, PLACE_Z, size), device=device)}


def heatmap_cross_entropy(logits: Tensor, pixel: Tensor) -> Tensor:
    """Cross-entropy of (B, H, W) logits (a softmax over all pixels) against (B, 2) (u, v) targets."""
    w = logits.shape[-1]
    return F.cross_entropy(logits.flatten(1), pixel[:, 1] * w + pixel[:, 0])


# -- acting ---------------------------------------------------------------------------------------
class Waypoint(NamedTuple):
    xyz: np.ndarray
    grip: float
    tol: float = 0.0   # reached when every coordinate of the hand is within tol (m) ...
    hold: int = 0      # ... or, when hold > 0, after that many steps in place (fingers closing / opening)


class PickPlacePrimitive:
    """Ravens' pick-and-place primitive: waypoints fixed at the start (open loop), each call one
    action that moves the hand towards the current one (clipped to one control step's reach).

    Above the pick at 7 cm, down to 1.3 cm, close (4 steps), up to 9 cm, above the place, down to
    4.5 cm, open (3 steps), up: the scripted expert's heights. A waypoint the hand cannot reach
    (fingers landing on a block after a bad pick) is given up after ``WAYPOINT_TIMEOUT`` steps.
    """

    def __init__(self, pick_xy: Sequence[float], place_xy: Sequence[float]) -> None:
        p, q = np.asarray(pick_xy, dtype=np.float64), np.asarray(place_xy, dtype=np.float64)
        self.waypoints = [
            Waypoint(np.r_[p, 0.07], OPEN, tol=0.008),
            Waypoint(np.r_[p, 0.013], OPEN, tol=0.004),
            Waypoint(np.r_[p, 0.013], CLOSE, hold=4),
            Waypoint(np.r_[p, SAFE_Z], CLOSE, tol=0.01),
            Waypoint(np.r_[q, SAFE_Z], CLOSE, tol=0.006),
            Waypoint(np.r_[q, 0.045], CLOSE, tol=0.005),
            Waypoint(np.r_[q, 0.045], OPEN, hold=3),
            Waypoint(np.r_[q, SAFE_Z], OPEN, tol=0.01),
        ]
        self.index = self.steps = 0

    @property
    def done(self) -> bool:
        return self.index == len(self.waypoints)

    def act(self, hand: np.ndarray) -> np.ndarray:
        waypoint = self.waypoints[self.index]
        self.steps += 1
        if waypoint.hold:
            reached = self.steps >= waypoint.hold
        else:
            reached = bool(np.all(np.abs(waypoint.xyz - hand) < waypoint.tol))
        if reached or self.steps >= WAYPOINT_TIMEOUT:
            self.index, self.steps = self.index + 1, 0
        return np.r_[np.clip((waypoint.xyz - hand) / MAX_DELTA, -1.0, 1.0), waypoint.grip].astype(np.float32)


# -- the method -----------------------------------------------------------------------------------
def heatmap_overlay(image: Tensor, logits: Tensor) -> Tensor:
    """(3, H, W) uint8 and (H, W) logits -> (3, H, W) in [0, 1]: the softmax, scaled to its peak, over the image."""
    prob = logits.flatten().softmax(0).view_as(logits)
    heat = prob / prob.max()
    return 0.4 * image.float() / 255 + 0.6 * torch.stack([heat, heat**2, torch.zeros_like(heat)])


class CLIPort(PolicyModule):
    observation_image = True

    def __init__(self, net: nn.Module, shift: int = 4, lr: float = 1e-3, weight_decay: float = 1e-4,
                 log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        """``net``: the two-stream heat-map network (``models.cliport.CLIPortNet``: ``semantic_features``,
        ``pick_logits``, ``place_logits``, and ``forward(image, lang) -> (pick, place)`` pixels);
        ``shift``: random image shift (pixels) in training, labels moved along (DrQ-style; CLIPort
        augments with random SE(2) transforms of image and labels)."""
        super().__init__(lr, weight_decay, n_action_steps=1, log_videos=log_videos, cache_dir=cache_dir)
        self.save_hyperparameters()   # under the CLI, net is recorded as its class_path and init_args
        self.shift = shift
        self.net = net

    # -- training on episodes ------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.episode_loss(**episode_rows(batch))

    def episode_loss(self, image: Tensor, lang: Tensor, pick: Tensor, place: Tensor) -> Tensor:
        """Pick and place cross-entropies on first images (B, 3, H, W) with (u, v) labels (B, 2)."""
        if self.training and self.shift > 0:
            image, offsets = random_shift(image, self.shift)
            size = image.shape[-1]
            pick, place = (pick - offsets).clamp(0, size - 1), (place - offsets).clamp(0, size - 1)
        features = self.net.semantic_features(image)
        return (heatmap_cross_entropy(self.net.pick_logits(image, lang, features), pick)
                + heatmap_cross_entropy(self.net.place_logits(image, lang, pick, features), place))

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0 and batch_idx == 0 and "first_image" in batch:
            # The first validation demo: the epoch's heat maps (on_validation_epoch_end) show it.
            self._heatmap_demo = (batch["first_image"][:1], batch["lang"][:1])
        super().validation_step(batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        experiment = getattr(self.logger, "experiment", None)
        if (self.trainer.sanity_checking or not hasattr(experiment, "add_image")
                or not hasattr(self, "_heatmap_demo")):
            return
        image, lang = self._heatmap_demo
        with torch.no_grad():
            features = self.net.semantic_features(image)
            pick_logits = self.net.pick_logits(image, lang, features)
            place_logits = self.net.place_logits(image, lang, argmax_pixel(pick_logits), features)
        panels = [image[0].float() / 255, heatmap_overlay(image[0], pick_logits[0]),
                  heatmap_overlay(image[0], place_logits[0])]
        experiment.add_image("heatmaps/image_pick_place", torch.cat(panels, 2), self.global_step)

    # -- acting ----------------------------------------------------------------------------------
    def begin(self, envs: Sequence[TabletopEnv]) -> None:
        super().begin(envs)
        self.envs = list(envs)
        self.primitives: list[PickPlacePrimitive | None] = [None] * len(envs)

    @torch.no_grad()
    def act(self, obs: Sequence[dict], ids: Sequence[int]) -> np.ndarray:
        plan = [n for n, i in enumerate(ids) if self.primitives[i] is None or self.primitives[i].done]
        if plan:
            image = torch.as_tensor(np.stack([obs[n]["image"] for n in plan]), device=self.device).permute(0, 3, 1, 2)
            was_training = self.training
            self.eval()
            pick, place = self.net(image, self._lang[[ids[n] for n in plan]])
            self.train(was_training)
            size = image.shape[-1]
            for n, p, q in zip(plan, pick.cpu().numpy(), place.cpu().numpy()):
                self.primitives[ids[n]] = PickPlacePrimitive(pixel_to_table(*p, PICK_Z, size),
                                                             pixel_to_table(*q, PLACE_Z, size))
        return np.stack([self.primitives[i].act(self.envs[i].hand_position()) for i in ids])
