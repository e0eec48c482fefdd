"""`fewshot-anomaly fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from fewshot_anomaly.data.datamodule import AnomalyDataModule
from fewshot_anomaly.methods.module import AnomalyModule
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    # One model per category of the data: the datamodule resolves them (`category: all` lists the root).
    return run_cli(AnomalyModule, AnomalyDataModule, project="fewshot-anomaly", args=args,
                   instantiate_links={"data.categories": "model.init_args.categories"})


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
