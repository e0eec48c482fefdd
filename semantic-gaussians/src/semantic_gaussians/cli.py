"""`semantic-gaussians fit|validate|test|predict --config ...`: the collection's LightningCLI.

The model is any method of ``methods/`` (a ``GaussianSplatting``), picked by the config's ``class_path``; the data
any ``SceneDataModule`` (the synthetic street by default, a COLMAP folder, a NeRF-synthetic / D-NeRF folder).
Method configs leave ``data`` out, so a data config composes before or after them. ``predict`` writes a
fly-through video of the test views (RGB and a text query's relevancy) into the run directory.
"""

from semantic_gaussians.data.datamodule import SceneDataModule
from semantic_gaussians.methods.splatting import GaussianSplatting
from shared_utils.cli import CollectionCLI, run_cli


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    return run_cli(GaussianSplatting, SceneDataModule, project="semantic-gaussians", args=args,
                   default_data="semantic_gaussians.data.datamodule.SyntheticStreet")


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
