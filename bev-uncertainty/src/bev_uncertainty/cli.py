"""`bev-uncertainty fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from bev_uncertainty.data.datamodule import BEVDataModule
from bev_uncertainty.methods.base import BEVSegmentation
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    return run_cli(BEVSegmentation, BEVDataModule, project="bev-uncertainty", args=args)


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
