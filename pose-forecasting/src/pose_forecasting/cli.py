"""`pose-forecasting fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from pose_forecasting.data.datamodule import PoseDataModule
from pose_forecasting.methods.module import ForecastModule
from shared_utils.cli import run_cli


def main() -> None:
    run_cli(ForecastModule, PoseDataModule, project="pose-forecasting")
