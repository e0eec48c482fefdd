"""`fewshot-anomaly fit|validate|test|predict --config ...`: the collection's LightningCLI."""

from fewshot_anomaly.data.datamodule import AnomalyDataModule
from fewshot_anomaly.methods.module import AnomalyModule
from shared_utils.cli import run_cli


def main() -> None:
    run_cli(AnomalyModule, AnomalyDataModule, project="fewshot-anomaly")
