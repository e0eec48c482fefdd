"""`bev-uncertainty fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from bev_uncertainty.data.datamodule import BEVDataModule
from bev_uncertainty.methods.base import BEVSegmentation
from shared_utils.cli import run_cli


def main() -> None:
    run_cli(BEVSegmentation, BEVDataModule, project="bev-uncertainty")
