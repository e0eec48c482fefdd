"""Find the last or best checkpoint of a run directory and load its model for inference.

A run directory is ``runs/<project>/<experiment>/version_<n>/`` as written by
``shared_utils.cli``: ``checkpoints/last.ckpt`` and ``checkpoints/best-epochNNN.ckpt``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from lightning.pytorch import LightningModule


def latest_run(experiment_dir: str | Path, containing: str | None = None) -> Path:
    """The ``version_<n>`` directory with the highest n under ``experiment_dir`` (among those
    that hold the file ``containing``, e.g. ``"checkpoints/last.ckpt"``, when given)."""
    experiment_dir = Path(experiment_dir)
    versions = [p for p in experiment_dir.glob("version_*") if p.name.removeprefix("version_").isdigit()
                and (containing is None or (p / containing).is_file())]
    if not versions:
        what = f"{experiment_dir}/version_<n>/{containing or ''}"
        raise FileNotFoundError(f"no run under {experiment_dir} (expected {what})")
    return max(versions, key=lambda p: int(p.name.removeprefix("version_")))


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """``checkpoints/last.ckpt`` or the best checkpoint of a run directory.

    The best is the one ``best-*.ckpt``; where several exist (``save_top_k > 1``) it is the
    ``best_model_path`` that ModelCheckpoint recorded in ``last.ckpt``.
    """
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    ckpt_dir = Path(run_dir) / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if which == "last":
        if not last.is_file():
            raise FileNotFoundError(f"{last} does not exist: the run saved no checkpoint")
        return last
    best = sorted(ckpt_dir.glob("best*.ckpt"))
    if len(best) == 1:
        return best[0]
    if len(best) > 1 and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        for key, value in state.get("callbacks", {}).items():
            if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
                recorded = ckpt_dir / Path(value["best_model_path"]).name
                if recorded.is_file():
                    return recorded
    found = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    raise FileNotFoundError(f"no unique best checkpoint (best*.ckpt) in {ckpt_dir}; found {found}")


def load_model(path: str | Path, which: str = "best", map_location: str | torch.device = "cpu") -> LightningModule:
    """Load the LightningModule of a checkpoint file, or of a run directory's best/last one,
    in eval mode. Its class comes from the checkpoint (the CLI records the class path)."""
    path = Path(path)
    ckpt = path if path.is_file() else find_checkpoint(path, which)
    hparams = torch.load(ckpt, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    class_path = hparams.get("_class_path")
    if class_path is None:
        raise ValueError(f"{ckpt} records no model class (hyper_parameters._class_path); was it written "
                         "by the collection's CLI from a model that calls save_hyperparameters()?")
    module_name, class_name = class_path.rsplit(".", 1)
    model_class = getattr(importlib.import_module(module_name), class_name)
    return model_class.load_from_checkpoint(ckpt, map_location=map_location).eval()
