"""A tiny regression project that drives the collection's CLI in the tests.

It has what a real project has that matters to the CLI: a monitored validation metric,
dropout and a shuffled training set (so that resuming must restore the RNG states), test
metrics under ``test/``, a test-time setting (MC-dropout samples) and an optional dataset root
that is validated in ``setup``.
"""

from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shared_utils.cli import run_cli
from shared_utils.datasets import DatasetFormatError, folder_listing


class TinyRegressor(LightningModule):
    monitor = "val/loss"
    monitor_mode = "min"
    test_time_hparams = ("mc_samples",)

    def __init__(self, hidden: int = 16, dropout: float = 0.2, lr: float = 0.05, mc_samples: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.hparams.mc_samples == 1:
            return self.net(x).squeeze(-1)
        self.net[2].train()  # MC dropout: average predictions over dropout masks
        out = torch.stack([self.net(x).squeeze(-1) for _ in range(self.hparams.mc_samples)]).mean(0)
        self.net[2].eval()
        return out

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), sync_dist=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/loss", self._loss(batch), sync_dist=True)
        self.log("test/mae", (self(x) - y).abs().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyWide(TinyRegressor):
    """Another model class, for the checkpoint/config mismatch test."""


class TinyData(LightningDataModule):
    num_features = 4  # an attribute a model argument can be linked to (instantiate_links)

    def __init__(self, num_samples: int = 96, batch_size: int = 16, root: str | None = None) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.root = root

    def setup(self, stage: str) -> None:
        if self.root is not None and not (Path(self.root) / "data.csv").is_file():
            raise DatasetFormatError(f"{self.root}: expected data.csv, {folder_listing(self.root)}")
        g = torch.Generator().manual_seed(0)  # the data never depend on the run's seed
        x = torch.randn(self.num_samples, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(self.num_samples, generator=g)
        n = self.num_samples // 3
        self.train_set = TensorDataset(x[n:], y[n:])
        self.val_set = TensorDataset(x[:n], y[:n])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return self.val_dataloader()


def main() -> None:
    run_cli(TinyRegressor, TinyData, project="tiny")
