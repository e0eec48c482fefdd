"""`adversarial-defense fit|validate|test|predict --config ...`: the collection's LightningCLI.

The model is any of the project's three task modules (``ClassifierModule``, ``DetectorModule``,
``ReIDModule``), picked by the config's ``class_path``; each takes ``num_classes`` (classes, or training
identities for re-identification) from the built datamodule.
"""

from lightning.pytorch import LightningModule

from adversarial_defense.data.datamodule import AdversarialDataModule
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    return run_cli(LightningModule, AdversarialDataModule, project="adversarial-defense", args=args,
                   instantiate_links={"data.num_classes": "model.init_args.num_classes"})


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
