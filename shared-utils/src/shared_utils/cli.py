"""The collection's LightningCLI: the one entry point of every project.

A project's console script is two lines::

    def main() -> None:
        run_cli(AnomalyModule, AnomalyDataModule)     # base classes; configs pick subclasses

and users get LightningCLI as they know it (``fit|validate|test|predict``, ``--config`` repeated,
``--print_config``, dotted overrides, ``--ckpt_path``) plus the collection's contract
(../shared/CONVENTIONS.md):

- model and data in subclass mode (YAML ``class_path``/``init_args``);
- a fixed default seed (``seed_everything: 42``) recorded in the saved ``config.yaml``;
- every run in its own ``<runs root>/<project>/<experiment>/version_<n>/`` (TensorBoard events,
  ``config.yaml``, ``checkpoints/last.ckpt`` and ``checkpoints/best-epochNNN.ckpt``), never
  reusing an earlier run's directory; ``<experiment>`` is ``--experiment`` or the model class
  name in lower case; the runs root is ``--trainer.default_root_dir`` when given, else ``runs/``
  at the root of the collection checkout the command runs in (from the root or from inside a
  project: the same place), else ``./runs`` (``runs_root``);
- a command that fails leaves no run directory behind (unless it saved a checkpoint or metrics),
  and a dataset error (``shared_utils.datasets.DatasetFormatError``) or a YAML file that does not
  parse is printed as one line naming the file, without a traceback;
- ``validate|test|predict --config c.yaml --ckpt_path x.ckpt`` builds the model of the checkpoint
  with its hyperparameters, except the model's ``test_time_hparams`` (MC samples, evaluation
  episodes...), which come from the config, as do all data settings; a config that asks for
  another model class stops with an error, other differences are reported (``checkpoint_hparams``);
- the saved ``config.yaml`` of a fit has no ``ckpt_path``: it reruns the run from scratch, in a
  new directory, even when the run was resumed;
- ``links`` (``run_cli(..., links={"data.init_args.x": "model.init_args.x"})``): settings that both
  the data and the model need are given once, in the source, and copied to the target when the
  arguments are parsed; ``instantiate_links`` (``{"data.categories": "model.init_args.categories"}``)
  copy an attribute of the built datamodule (what only the data knows once it is set up);
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
import importlib
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from shared_utils.checkpoints import find_checkpoint, latest_run
from shared_utils.datasets import DatasetFormatError
from shared_utils.paths import collection_root

DEFAULT_SEED = 42


def runs_root(default_root_dir: str | Path | None = None) -> Path:
    """Where runs go: ``default_root_dir`` when given (``--trainer.default_root_dir``), else ``runs/`` at the
    root of the collection checkout the command runs in (the same from the root or a project folder, so
    ``make train`` and the console script agree), else ``./runs`` (a project installed on its own)."""
    if default_root_dir is not None:
        return Path(default_root_dir)
    root = collection_root()
    return root / "runs" if root is not None else Path("runs")


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


class ConfigFileError(ValueError):
    """A ``--config`` file that is not valid YAML (the message names the file, line and column)."""


class CheckpointMismatchError(ValueError):
    """``--ckpt_path`` holds another model class than the config asks for."""


def _class_paths(args: dict, prefix: str = "") -> dict[str, str]:
    """``{"model": "pkg.SiMLPe", ...}``: the class path of every nested subclass argument, by dotted name."""
    out = {}
    for name, value in args.items():
        if isinstance(value, dict) and "class_path" in value:
            out[prefix + name] = value["class_path"]
            out |= _class_paths(value.get("init_args") or {}, f"{prefix}{name}.init_args.")
    return out


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, recursively: a checkpoint stores ``(2.0, 38.0)`` where YAML gives a list."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def checkpoint_hparams(ckpt: str | Path, hparams: dict, config_model: dict) -> tuple[dict, list[str]]:
    """The model to build for ``--ckpt_path ckpt``: the checkpoint's class and hyperparameters, except the
    names in the class's ``test_time_hparams`` (settings that only change how a trained model is evaluated:
    MC samples, evaluation episodes...), which come from the config. Returns the model config and notes for
    the user: the test-time settings applied and the config values ignored (architecture, training).

    Raises CheckpointMismatchError when the config asks for another model class (or nested network class)
    than the checkpoint holds: that config describes another model, and silently testing the checkpoint's
    would report numbers under the wrong name.
    """
    hparams = {k: v for k, v in hparams.items() if k != "_instantiator"}
    class_path = hparams.pop("_class_path")
    asked = config_model.get("class_path")
    config_args = config_model.get("init_args") or {}
    held = {"model": class_path} | {f"model.init_args.{k}": v for k, v in _class_paths(hparams).items()}
    wanted = {"model": asked} | {f"model.init_args.{k}": v for k, v in _class_paths(config_args).items()}
    differ = [f"{key}: config {wanted[key]}, checkpoint {held[key]}" for key in held
              if key in wanted and wanted[key] != held[key]]
    if differ:
        raise CheckpointMismatchError(
            f"{ckpt} holds another model than the config asks for ({'; '.join(differ)}): give the config of the "
            "method that trained it (its run's config.yaml), or drop --ckpt_path to train this one")
    module_name, class_name = class_path.rsplit(".", 1)
    test_time = getattr(getattr(importlib.import_module(module_name), class_name), "test_time_hparams", ())
    applied, ignored = [], []
    for name, value in config_args.items():
        if name not in hparams or _plain(hparams[name]) == _plain(value):
            continue
        if name in test_time:
            applied.append(f"{name}={value!r}")
            hparams[name] = value
        else:
            ignored.append(f"{name} (config {value!r}, checkpoint {hparams[name]!r})")
    notes = []
    if applied:
        notes.append(f"test-time settings from the config: {', '.join(applied)}")
    if ignored:
        notes.append(f"{ckpt} keeps its own hyperparameters; ignored from the config: {'; '.join(ignored)}"
                     f" (test-time settings of {class_name}: {', '.join(test_time) or 'none'})")
    init_args = {k: v for k, v in hparams.items() if k in config_args}
    extra = {k: v for k, v in hparams.items() if k not in config_args}
    return {"class_path": class_path, "init_args": init_args, **({"dict_kwargs": extra} if extra else {})}, notes


class RunConfig(SaveConfigCallback):
    """Saves the run's ``config.yaml`` without ``ckpt_path`` for a fit: ``fit --config <that file>`` then
    reruns the run from scratch in a new directory, even when this run was a resumed one."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and self.config.get("ckpt_path") is not None:
            self.config = self.config.clone()
            self.config.ckpt_path = None
        super().setup(trainer, pl_module, stage)


class CollectionCLI(LightningCLI):
    """LightningCLI with the collection's run directories, checkpoints and metrics.json."""

    def __init__(self, model_class: type[LightningModule], datamodule_class: type[LightningDataModule],
                 project: str, args: list[str] | None = None, links: dict[str, str] | None = None,
                 instantiate_links: dict[str, str] | None = None, default_data: str | None = None) -> None:
        self.project = project
        self.links = links or {}
        self.instantiate_links = instantiate_links or {}
        self.default_data = default_data
        self.version: int | None = None  # set when resuming a run in its own directory
        self.run_dir: Path | None = None  # set with the logger; removed again if the command fails early
        super().__init__(
            model_class,
            datamodule_class,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=DEFAULT_SEED,
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str | None, default=None,
                            help="Run directory name: runs/<project>/<experiment>/version_<n>/ "
                                 "(default: the model class name in lower case).")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="After fit, test the best checkpoint (what `make train` does).")
        for source, target in self.links.items():
            parser.link_arguments(source, target, apply_on="parse")
        for source, target in self.instantiate_links.items():
            parser.link_arguments(source, target, apply_on="instantiate")
        if self.default_data is not None:
            parser.set_defaults({"data": {"class_path": self.default_data}})

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # jsonargparse reports a YAML syntax error in "<unicode string>": name the file instead.
        argv = list(sys.argv[1:] if args is None else args)
        for flag, value in zip(argv, [*argv[1:], None]):
            path = value if flag == "--config" else flag.split("=", 1)[1] if flag.startswith("--config=") else None
            if path and Path(path).is_file():
                try:
                    yaml.safe_load(Path(path).read_text())
                except yaml.YAMLError as err:
                    mark = getattr(err, "problem_mark", None)
                    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                    raise ConfigFileError(f"{path}{where}: not valid YAML: {problem}") from err
        super().parse_arguments(parser, args)

    # -- run directory and checkpoint resolution --------------------------------------------

    def experiment_dir(self) -> Path:
        config = self.config[self.config["subcommand"]]
        name = config.get("experiment") or config["model"]["class_path"].rsplit(".", 1)[-1].lower()
        return runs_root(config["trainer"].get("default_root_dir")) / self.project / name

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path best|last`` to the latest trained run's file, then take the model's class and
        hyperparameters from the checkpoint, except its test-time settings (``checkpoint_hparams``)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt = config.get("ckpt_path")
        if ckpt in ("last", "best") and not (subcommand == "fit" and ckpt == "best"):
            # The latest run that trained (test/validate runs have no checkpoints of their own).
            run = latest_run(self.experiment_dir(), containing="checkpoints/last.ckpt")
            ckpt = str(find_checkpoint(run, ckpt))
            config["ckpt_path"] = ckpt
        if not ckpt or not Path(ckpt).is_file():
            return
        if subcommand == "fit":
            # Resuming: continue in the run directory the checkpoint belongs to.
            run_dir = Path(ckpt).resolve().parent.parent
            if re.fullmatch(r"version_\d+", run_dir.name) and run_dir.parent == self.experiment_dir().resolve():
                self.version = int(run_dir.name.removeprefix("version_"))
        hparams = torch.load(ckpt, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        if "_class_path" not in hparams:
            return  # not written by this CLI: the config's model gets the checkpoint's weights
        # Linked arguments come from their source (the data), not from the checkpoint.
        linked = {t.removeprefix("model.init_args.") for t in [*self.links.values(), *self.instantiate_links.values()]}
        hparams = {k: v for k, v in hparams.items() if k not in linked}
        model, notes = checkpoint_hparams(ckpt, hparams, config["model"].as_dict())
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self.config_init[self.subcommand]["trainer"]
        if trainer_config.get("logger") is None:
            exp = self.experiment_dir()
            # The version is fixed here, not left to the logger: spawned DDP workers would each
            # pick the next free one, and fit and test would land in different directories.
            version = self.version if self.version is not None else next_version(exp)
            kwargs["logger"] = TensorBoardLogger(save_dir=exp.parent, name=exp.name, version=version,
                                                 default_hp_metric=False)
            if self.version is None:
                self.run_dir = exp / f"version_{version}"
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

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except Exception:
            self._remove_failed_run()
            raise

    def _remove_failed_run(self) -> None:
        """A command that failed before it saved a checkpoint or metrics (bad data, a crash in the first
        epoch) leaves no ``version_<n>`` behind: the logger creates it before the datamodule's setup runs."""
        run = self.run_dir
        if run is None or not run.is_dir() or not self.trainer.is_global_zero:
            return
        if not any(run.rglob("*.ckpt")) and not (run / "metrics.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            if run.parent.is_dir() and not any(run.parent.iterdir()):
                run.parent.rmdir()  # the experiment folder this command created, now empty

    # -- make train: fit, then test the best checkpoint --------------------------------------

    def after_fit(self) -> None:
        if self.config_init["fit"].get("test_after_fit"):
            # Without a monitor there is no best checkpoint: the latest is the result (module docstring).
            ckpt = "best" if getattr(self.model, "monitor", None) else "last"
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
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


# Errors whose message is the whole story (file, field, expected, found): printed as one line, no traceback.
USER_ERRORS = (DatasetFormatError, ConfigFileError, CheckpointMismatchError)


def run_cli(model_class: type[LightningModule], datamodule_class: type[LightningDataModule],
            project: str | None = None, args: list[str] | None = None,
            links: dict[str, str] | None = None, instantiate_links: dict[str, str] | None = None,
            default_data: str | None = None) -> CollectionCLI:
    """Run the collection's CLI; ``project`` defaults to the model's top package, dashed. ``links`` maps a
    source argument to the target that must equal it (``parser.link_arguments``, applied on parse);
    ``instantiate_links`` maps an attribute of the built datamodule to a model argument (applied when
    the datamodule is instantiated, before the model). ``default_data``: the class path of the datamodule
    used when no config names one, so that method configs can leave ``data`` out and compose with a data
    config given before or after them (``--config kitti15.yaml --config homography.yaml``).

    A known user error (``USER_ERRORS``) exits with status 2 and one line on stderr."""
    project = project or model_class.__module__.split(".")[0].replace("_", "-")
    keep_freed_memory()
    try:
        return CollectionCLI(model_class, datamodule_class, project=project, args=args, links=links,
                             instantiate_links=instantiate_links, default_data=default_data)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from err


def find_user_error(err: BaseException, depth: int = 10) -> BaseException | None:
    """``err`` itself or the user error it was raised from: jsonargparse wraps an error raised by a class it
    instantiates from a config (e.g. an argument a constructor refuses) in a ValueError of its own."""
    for _ in range(depth):
        if err is None or isinstance(err, USER_ERRORS):
            return err
        err = err.__cause__ or err.__context__
    return None
