"""`vlm-robot-control fit|validate|test|predict --config ...`: the collection's LightningCLI."""

import vlm_robot_control  # noqa: F401  (registers the gymnasium env, sets MUJOCO_GL)
from shared_utils.cli import run_cli
from vlm_robot_control.data.datamodule import TabletopDataModule
from vlm_robot_control.methods.base import PolicyModule


def main() -> None:
    run_cli(PolicyModule, TabletopDataModule, project="vlm-robot-control")
