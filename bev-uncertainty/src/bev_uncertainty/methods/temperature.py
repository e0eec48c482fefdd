"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

The network is trained exactly as the entropy baseline; before testing, one scalar T > 0 divides
all logits, fitted on the validation split by minimising the NLL (LBFGS on log T, as Guo et al.'s
reference code). It changes calibration (ECE, NLL, Brier) but not the ranking of cells by
confidence: IoU is unchanged and the entropy ranks cells as before, so the misclassification and
OOD AUROCs equal the baseline's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bev_uncertainty.methods.base import BEVSegmentation, binary_entropy


def fit_temperature(logits: Tensor, targets: Tensor) -> float:
    """The T minimising the NLL of ``softmax(logits / T)`` (N, K) against ``targets`` (N,) (LBFGS on log T).

    Works when called under Lightning's test-time inference mode: the optimisation runs outside it.
    """
    with torch.inference_mode(False), torch.enable_grad():
        logits, targets = logits.clone(), targets.clone()  # inference tensors cannot enter autograd
        log_t = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

        def nll() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), targets)
            loss.backward()
            return loss

        optimizer.step(nll)
    return float(log_t.detach().exp())


class TemperatureScaling(BEVSegmentation):
    test_time_hparams = ("max_cells",)  # the validation cells T is fitted on, before every test

    def __init__(self, *args, max_cells: int = 2_000_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_cells = max_cells
        # Not saved: refitted on the validation split at every test, so an entropy checkpoint tests as well.
        self.register_buffer("temperature", torch.ones(()), persistent=False)

    def on_test_start(self) -> None:
        self.calibrate()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/temperature", self.temperature.item())

    def calibrate(self) -> float:
        """Fit T on the validation split's valid cells (at most ``max_cells``, a fixed random subset)."""
        logits, targets = [], []
        with torch.inference_mode(False), torch.no_grad():
            for batch in self.trainer.datamodule.val_dataloader():
                batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out = self(batch)["logits"][:, :2].movedim(1, -1)
                logits.append(out[batch["valid"]].cpu())
                targets.append(self.target(batch)[batch["valid"]].cpu())
        logits, targets = torch.cat(logits), torch.cat(targets)
        if len(logits) > self.max_cells:
            keep = torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))[:self.max_cells]
            logits, targets = logits[keep], targets[keep]
        self.temperature.fill_(fit_temperature(logits, targets))
        return self.temperature.item()

    def predict(self, batch: dict) -> dict[str, Tensor]:
        prob = (self(batch)["logits"][:, :2] / self.temperature).softmax(1)[:, 1]
        entropy = binary_entropy(prob)
        return {"prob": prob, "uncertainty": entropy, "ood_score": entropy}
