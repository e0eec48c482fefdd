"""`open-world-ood fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from open_world_ood.data.datamodule import DetectionDataModule
from open_world_ood.methods.module import OpenWorldModule
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    # The known classes, how many earlier tasks introduced, and the test contexts are what the data
    # resolves on disk (task splits, class lists): the model gets them from the built datamodule.
    return run_cli(OpenWorldModule, DetectionDataModule, project="open-world-ood", args=args,
                   instantiate_links={"data.known_classes": "model.init_args.known_classes",
                                      "data.num_previous": "model.init_args.num_previous",
                                      "data.contexts": "model.init_args.contexts"})


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
