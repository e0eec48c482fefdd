"""`pose-forecasting fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from pose_forecasting.data.datamodule import PoseDataModule
from pose_forecasting.methods.module import ForecastModule
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    # The horizon is the benchmark's (data); the network predicts exactly that many frames.
    return run_cli(ForecastModule, PoseDataModule, project="pose-forecasting", args=args,
                   links={"data.init_args.output_frames": "model.init_args.model.init_args.output_frames"})


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
