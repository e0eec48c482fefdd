"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

The network is trained exactly as the entropy baseline; one scalar T > 0 divides all logits, fitted
on the validation split by minimising the NLL (LBFGS on log T, as Guo et al.'s reference code). T is
refitted at the end of every validation, on that epoch's network, and saved with it: the best
checkpoint carries the T of its own weights, and testing it needs nothing but the checkpoint (no
reaching back into the datamodule for validation data). T changes calibration (ECE, NLL, Brier) but
not the ranking of cells by confidence: IoU is unchanged and the entropy ranks cells as before, so the
misclassification and OOD AUROCs equal the baseline's.
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
    def __init__(self, *args, max_cells: int = 2_000_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_cells = max_cells
        self.register_buffer("temperature", torch.ones(()))  # saved: the T of the checkpoint's weights
        self._calibration: list[tuple[Tensor, Tensor]] = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        logits = self(batch)["logits"][:, :2].movedim(1, -1)  # a second forward: T must see the raw logits
        self._calibration.append((logits[batch["valid"]].cpu(), self.target(batch)[batch["valid"]].cpu()))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/temperature", self.calibrate())

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/temperature", self.temperature.item())

    def calibrate(self) -> float:
        """Fit T on this validation's valid cells (at most ``max_cells``, a fixed random subset)."""
        logits, targets = (torch.cat(t) for t in zip(*self._calibration))
        self._calibration = []
        if len(logits) > self.max_cells:
            keep = torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))[:self.max_cells]
            logits, targets = logits[keep], targets[keep]
        self.temperature.fill_(fit_temperature(logits, targets))
        return self.temperature.item()

    def predict(self, batch: dict) -> dict[str, Tensor]:
        prob = (self(batch)["logits"][:, :2] / self.temperature).softmax(1)[:, 1]
        entropy = binary_entropy(prob)
        return {"prob": prob, "uncertainty": entropy, "ood_score": entropy}
