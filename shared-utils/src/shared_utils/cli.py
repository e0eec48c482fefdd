"""The collection's LightningCLI: the one entry point of every project.

A project's console script is two lines::

    def main() -> None:
        run_cli(AnomalyModule, AnomalyDataModule)     # base classes; configs pick subclasses

and users get LightningCLI as they know it (``fit|validate|test|predict``, ``--config`` repeated,
``--print_config``, dotted overrides, ``--ckpt_path``) plus the collection's contract
(../shared/CONVENTIONS.md):

- model and data in subclass mode (YAML ``class_path``/``init_args``);
- a fixed default seed (``seed_everything: 42``) recorded in the saved ``config.yaml``;
- every run in its own ``runs/<project>/<experiment>/version_<n>/`` (TensorBoard events,
  ``config.yaml``, ``checkpoints/last.ckpt`` and ``checkpoints/best-epochNNN.ckpt``), never
  reusing an earlier run's directory; ``<experiment>`` is ``--experiment`` or the model class
  name in lower case;
- the best checkpoint is chosen by the model's ``monitor`` / ``monitor_mode`` class attributes
  (e.g. ``monitor = "val/loss"``, ``monitor_mode = "min"``; without ``monitor``: the latest);
- ``metrics.json`` written at the end of every validate/test;
- ``fit --ckpt_path last`` resumes the experiment's latest run in its own directory, with
  the random-number states of the checkpoint, so it ends with the same weights as a run that
  was never interrupted; ``validate|test|predict --ckpt_path best|last`` use that run's
  checkpoints;
- ``fit --test_after_fit true`` tests the best checkpoint right after fitting (``make train``).
"""

from __future__ import annotations

import ctypes
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from shared_utils.checkpoints import find_checkpoint, latest_run

DEFAULT_SEED = 42
RUNS_DIR = Path("runs")


class MetricsJson(Callback):
    """Writes ``metrics.json`` into the run directory at the end of every validate/test.

    ``{"stage": "test", "ckpt": "...", "metrics": {"test/iou": 0.41, ...}, "seconds": 12.3}``
    """

    _STAGES = {TrainerFn.VALIDATING: "validate", TrainerFn.TESTING: "test"}

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def _begin(self, trainer: Trainer) -> None:
        if trainer.state.fn in self._STAGES:
            self._start = time.perf_counter()

    def _end(self, trainer: Trainer) -> None:
        stage = self._STAGES.get(trainer.state.fn)
        if stage is None or trainer.sanity_checking:
            return
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        if not trainer.is_global_zero or log_dir is None:
            return
        record = {
            "stage": stage,
            "ckpt": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "metrics": {k: float(v) for k, v in sorted(trainer.callback_metrics.items())},
            "seconds": round(time.perf_counter() - self._start, 3),
        }
        path = Path(log_dir) / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer)


def _numpy_state_to_tensors(state: tuple) -> tuple:
    # Checkpoints load with weights_only=True, which refuses NumPy arrays: keep a tensor.
    name, keys, pos, has_gauss, cached = state
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


class RngStates(Callback):
    """Saves the Python, NumPy and torch RNG states in every checkpoint and restores them on
    resume: a resumed run then draws the same shuffles and dropout masks as one that was never
    interrupted (Lightning restores weights, optimiser and loops, not these)."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states is None or trainer.state.fn != TrainerFn.FITTING:
            return
        random.setstate(states["python"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def next_version(experiment_dir: Path) -> int:
    """One past the highest ``version_<n>`` under ``experiment_dir`` (0 for a new experiment)."""
    numbers = [int(p.name.removeprefix("version_")) for p in experiment_dir.glob("version_*")
               if p.name.removeprefix("version_").isdigit()]
    return max(numbers, default=-1) + 1


class CollectionCLI(LightningCLI):
    """LightningCLI with the collection's run directories, checkpoints and metrics.json."""

    def __init__(self, model_class: type[LightningModule], datamodule_class: type[LightningDataModule],
                 project: str, args: list[str] | None = None) -> None:
        self.project = project
        self.version: int | None = None  # set when resuming a run in its own directory
        super().__init__(
            model_class,
            datamodule_class,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=DEFAULT_SEED,
            save_config_kwargs={"overwrite": True},
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str | None, default=None,
                            help="Run directory name: runs/<project>/<experiment>/version_<n>/ "
                                 "(default: the model class name in lower case).")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="After fit, test the best checkpoint (what `make train` does).")

    # -- run directory and checkpoint resolution --------------------------------------------

    def experiment_dir(self) -> Path:
        config = self.config[self.subcommand]
        name = config.get("experiment") or config["model"]["class_path"].rsplit(".", 1)[-1].lower()
        return RUNS_DIR / self.project / name

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        ckpt = config.get("ckpt_path")
        if ckpt in ("last", "best") and not (self.subcommand == "fit" and ckpt == "best"):
            # The latest run that trained (test/validate runs have no checkpoints of their own).
            run = latest_run(self.experiment_dir(), containing="checkpoints/last.ckpt")
            ckpt = str(find_checkpoint(run, ckpt))
            config["ckpt_path"] = ckpt
        if self.subcommand == "fit" and ckpt:
            # Resuming: continue in the run directory the checkpoint belongs to.
            run_dir = Path(ckpt).resolve().parent.parent
            if re.fullmatch(r"version_\d+", run_dir.name) and run_dir.parent == self.experiment_dir().resolve():
                self.version = int(run_dir.name.removeprefix("version_"))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self.config_init[self.subcommand]["trainer"]
        if trainer_config.get("logger") is None:
            exp = self.experiment_dir()
            # The version is fixed here, not left to the logger: spawned DDP workers would each
            # pick the next free one, and fit and test would land in different directories.
            version = self.version if self.version is not None else next_version(exp)
            kwargs["logger"] = TensorBoardLogger(save_dir=exp.parent, name=exp.name, version=version,
                                                 default_hp_metric=False)
        callbacks = list(trainer_config.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(ModelCheckpoint(
                monitor=getattr(self.model, "monitor", None),
                mode=getattr(self.model, "monitor_mode", "min"),
                save_last=True,
                save_top_k=1,
                filename="best-epoch{epoch:03d}",
                auto_insert_metric_name=False,
            ))
        kwargs["callbacks"] = [*callbacks, MetricsJson(), RngStates()]
        return super().instantiate_trainer(**kwargs)

    # -- make train: fit, then test the best checkpoint --------------------------------------

    def after_fit(self) -> None:
        if self.config_init["fit"].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")
        log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
        if self.trainer.is_global_zero and log_dir:
            print(f"\nRun directory: {log_dir}  (config.yaml, checkpoints/, metrics.json; "
                  "`make tensorboard` to look at it)")


def keep_freed_memory() -> bool:
    """Stop glibc from handing every freed multi-megabyte tensor back to the kernel.

    By default a block above the (adaptive) mmap threshold is ``mmap``-ed on allocation and unmapped on
    free, so a CPU evaluation loop that allocates the same few-MB activations for every batch page-faults
    them in again each time: measured on siMLPe's test loop, 13 s per batch of 256 windows, mostly system
    time, against 2 s with the thresholds raised (``mallopt``; the same as ``MALLOC_MMAP_THRESHOLD_``).
    Returns whether glibc accepted both settings (False where the C library is not glibc: a no-op).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
    trim_ok = libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    return bool(mmap_ok and trim_ok)


def run_cli(model_class: type[LightningModule], datamodule_class: type[LightningDataModule],
            project: str | None = None, args: list[str] | None = None) -> CollectionCLI:
    """Run the collection's CLI; ``project`` defaults to the model's top package, dashed."""
    project = project or model_class.__module__.split(".")[0].replace("_", "-")
    keep_freed_memory()
    return CollectionCLI(model_class, datamodule_class, project=project, args=args)
