"""Monte Carlo dropout (Gal & Ghahramani, ICML 2016; for segmentation: Kendall et al., Bayesian SegNet, BMVC 2017).

Dropout (Dropout2d in the BEV encoder, ``model.dropout``) stays on at test time; T stochastic passes
give T probability maps. The predictive probability is their mean; its entropy is the total
uncertainty (misclassification, AUSE) and the mutual information between the prediction and the
weights, H[E p] - E H[p], is the epistemic part (OOD). The image encoder and the splat have no
dropout, so they run once and only the BEV encoder runs T times (same result, T times cheaper).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bev_uncertainty.methods.base import BEVSegmentation, binary_entropy
from bev_uncertainty.models.lss import LiftSplat


class MCDropout(BEVSegmentation):
    test_time_hparams = ("samples",)  # the number of stochastic passes at test time

    def __init__(self, model: LiftSplat, samples: int = 10, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not any(isinstance(m, nn.Dropout2d) and m.p > 0 for m in model.bev_encoder.modules()):
            raise ValueError("MCDropout needs model.init_args.dropout > 0 (Dropout2d in the BEV encoder)")
        self.samples = samples

    def predict(self, batch: dict) -> dict[str, Tensor]:
        bev = self.model.lift_splat(batch["images"], batch["intrinsics"], batch["cam_to_ego"])["bev"]
        dropouts = [m for m in self.model.bev_encoder.modules() if isinstance(m, nn.Dropout2d)]
        for m in dropouts:
            m.train()
        try:
            probs = torch.stack([self.model.bev_encoder(bev)[:, :2].softmax(1)[:, 1] for _ in range(self.samples)])
        finally:
            for m in dropouts:
                m.train(self.training)
        prob = probs.mean(0)
        entropy = binary_entropy(prob)
        mutual_information = entropy - binary_entropy(probs).mean(0)
        return {"prob": prob, "uncertainty": entropy, "ood_score": mutual_information}
