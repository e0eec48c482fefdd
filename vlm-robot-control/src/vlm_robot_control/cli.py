"""`vlm-robot-control fit|validate|test|predict --config ...`: the collection's LightningCLI."""

import os

import torch

import vlm_robot_control  # noqa: F401  (registers the gymnasium env, sets MUJOCO_GL)
from shared_utils.cli import CollectionCLI, run_cli
from vlm_robot_control.data.datamodule import TabletopDataModule
from vlm_robot_control.methods.base import PolicyModule


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    # Small networks interleaved with single-threaded physics: torch's second thread only spins.
    # Measured on 2 shared cores: a PPO+BC update 89 ms with 1 thread vs 1462 ms with 2.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    # The module embeds instructions with its own encoder, whose embedding cache is the datamodule's.
    return run_cli(PolicyModule, TabletopDataModule, project="vlm-robot-control", args=args,
                   links={"data.init_args.cache_dir": "model.init_args.cache_dir"})


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
