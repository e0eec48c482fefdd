"""`sports-image-gen fit|validate|test|predict --config ...`: the collection's LightningCLI.

The model is ``ConditionalDiffusion`` with the conditions a method config switches on; the data the synthetic
broadcast proxy by default, or a SoccerNet-calibration folder (``configs/soccernet.yaml``). Method configs leave
``data`` out, so a data config composes before or after them.
"""

from shared_utils.cli import CollectionCLI, run_cli
from sports_image_gen.data.datamodule import SoccerNetCalibration
from sports_image_gen.methods.diffusion import ConditionalDiffusion


def cli(args: list[str] | None = None) -> CollectionCLI:
    """The CLI on ``args`` (default: the command line); tests call it and get the built CLI back."""
    return run_cli(ConditionalDiffusion, SoccerNetCalibration, project="sports-image-gen", args=args,
                   default_data="sports_image_gen.data.datamodule.SyntheticBroadcast")


def main() -> None:
    """The console script (``[project.scripts]``)."""
    cli()
