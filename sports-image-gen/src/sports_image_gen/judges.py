"""The detectors that read generated images, trained once per dataset on its rendered / real training images and
cached: ``data/sports-image-gen/judges/<hash>/``. Every method of a benchmark is judged by the same detectors.

- ``grid``: the test metrics' grid-keypoint detector (``models.detectors.GridDetector``).
- ``grid_loss``: a second one (another seed and width) that the geometry-consistency method trains against, so that
  the method is not scored by the very network it optimised.
- ``players``: CenterNet (left / right / referee) on the image upsampled ``PLAYER_UPSAMPLE`` times.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared_utils.cache import generate_once
from shared_utils.detection import CenterNet
from sports_image_gen.models.detectors import GridDetector

CACHE_DIR = "data/sports-image-gen/judges"
PLAYER_UPSAMPLE = 2
VERSION = 1


def player_detector() -> CenterNet:
    return CenterNet(num_classes=3, strides=(4, 8))


def detect_players(model: CenterNet, images: Tensor, k: int = 40, threshold: float = 0.3) -> list[dict[str, Tensor]]:
    """Detections (boxes in the input's pixels) above ``threshold``."""
    big = F.interpolate(images, scale_factor=PLAYER_UPSAMPLE, mode="bilinear", align_corners=False)
    out = []
    for det in model.decode(model(big), k=k):
        keep = det["scores"] > threshold
        out.append({"boxes": det["boxes"][keep] / PLAYER_UPSAMPLE, "scores": det["scores"][keep],
                    "labels": det["labels"][keep]})
    return out


def _batches(items: list[dict], batch: int, steps: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(items), (batch,), generator=gen)
        yield [items[i] for i in idx]


def train_grid(items: list[dict], steps: int, seed: int, width: int, batch: int = 32, lr: float = 2e-3) -> GridDetector:
    torch.manual_seed(seed)
    model = GridDetector(width)
    opt = torch.optim.AdamW(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    for chunk in _batches(items, batch, steps, seed):
        images = torch.stack([it["image"] for it in chunk])
        heat, vis = model(images)
        loss = GridDetector.loss(heat, vis, torch.stack([it["grid_keypoints"] for it in chunk]),
                                 torch.stack([it["grid_visible"] for it in chunk]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def train_players(items: list[dict], steps: int, seed: int, batch: int = 16, lr: float = 1e-3) -> CenterNet:
    torch.manual_seed(seed)
    model = player_detector()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    for chunk in _batches(items, batch, steps, seed):
        images = F.interpolate(torch.stack([it["image"] for it in chunk]), scale_factor=PLAYER_UPSAMPLE,
                               mode="bilinear", align_corners=False)
        targets = [{"boxes": it["boxes"][it["labels"] >= 0] * PLAYER_UPSAMPLE,
                    "labels": it["labels"][it["labels"] >= 0]} for it in chunk]
        loss = model.loss(model(images), targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def load_judge(name: str, data: dict, items: list[dict], steps: int, cache_dir: str = CACHE_DIR) -> nn.Module:
    """Train (once per dataset ``data``, judge and steps; cached) or load judge ``name`` from training ``items``."""
    builders = {"grid": lambda: train_grid(items, steps, seed=0, width=32),
                "grid_loss": lambda: train_grid(items, steps, seed=1, width=24),
                "players": lambda: train_players(items, steps, seed=0)}
    if name not in builders:
        raise ValueError(f"unknown judge {name!r}; known: {sorted(builders)}")
    record = {"version": VERSION, "judge": name, "data": data, "steps": steps}

    def generate(folder: Path) -> None:
        with torch.inference_mode(False), torch.enable_grad():  # Lightning's test loop runs in inference mode
            torch.save(builders[name]().state_dict(), folder / "weights.pt")

    folder = generate_once(cache_dir, record, generate)
    model = {"grid": lambda: GridDetector(32), "grid_loss": lambda: GridDetector(24),
             "players": player_detector}[name]()
    model.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)
