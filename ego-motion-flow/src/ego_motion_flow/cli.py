"""`ego-motion-flow fit|validate|test|predict --config ...`: the collection's LightningCLI.

The model is any method of ``methods/`` (a ``MotionMethod``), picked by the config's ``class_path``; the data
any ``FlowDataModule`` (synthetic roads, KITTI 2015, KITTI odometry, Virtual KITTI 2, Sintel). The synthetic
roads are the default data: method configs leave ``data`` out (or set only its ``init_args``), so a data config
composes before or after them. Methods that learn nothing run with ``test`` directly, without a checkpoint.
"""

from ego_motion_flow.data.datamodule import FlowDataModule
from ego_motion_flow.methods.base import MotionMethod
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    return run_cli(MotionMethod, FlowDataModule, project="ego-motion-flow", args=args,
                   default_data="ego_motion_flow.data.datamodule.SyntheticRoads")


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
