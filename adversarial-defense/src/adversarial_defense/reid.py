"""The Lightning layer for person re-identification: an embedding network, its retrieval metrics, and the
metric attacks of Bai et al. (``attacks/reid.py``) against it.

- fit: the "bag of tricks" strong baseline (Luo et al., CVPRW 2019): identity cross-entropy with label
  smoothing 0.1 on the BNNeck output plus the batch-hard triplet loss (Hermans, Beyer, Leibe 2017, margin
  0.3) on the pooled features, on P x K batches (``data.ids_per_batch`` identities x ``data.instances``
  images); Adam. With ``adversarial_eps`` > 0 the embedding is trained on metric-attacked images as well
  (adversarial training with the untargeted metric attack, Bai et al.'s "metric-preserving" idea in its
  simplest form: the same losses on clean and attacked batches). No validation split: the last checkpoint.
- test: the data's gallery (first test loader), then its queries (second): ``test/rank1`` and ``test/map``
  (Market-1501's protocol, ``metrics.market_cmc_map``) on clean queries, ``test/rank1_push`` / ``test/map_push``
  on queries attacked away from their identity's gallery embeddings, and ``test/pull_success``: the fraction
  of queries attacked towards another identity whose top-1 match becomes that identity. Percentages.
  TensorBoard: clean queries | attacked | amplified perturbation, per attack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from adversarial_defense.attacks._common import amplified, from_255
from adversarial_defense.attacks.reid import reid_pull, reid_push
from adversarial_defense.metrics import market_cmc_map
from adversarial_defense.models import ReIDNet
from shared_utils.logging import image_grid, log_image


def batch_hard_triplet(features: Tensor, pids: Tensor, margin: float = 0.3) -> Tensor:
    """Hermans et al. 2017: per anchor, its farthest positive and nearest negative in the batch."""
    distances = torch.cdist(features, features)
    same = pids[:, None] == pids[None, :]
    hardest_positive = (distances * same).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    valid = torch.isfinite(hardest_negative)
    if not valid.any():
        return features.sum() * 0
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


class ReIDModule(LightningModule):
    """Args:
        num_classes: training identities (linked from the data).
        width, dim: ``ReIDNet``'s first-stage channels and embedding size.
        lr, weight_decay: Adam's.
        margin, label_smoothing: the triplet margin and the cross-entropy's smoothing (BoT's 0.3, 0.1).
        attack_eps, attack_alpha, attack_steps: the test metric attacks (I-FGSM, 1/255 units).
        adversarial_eps: > 0 trains on attacked images too (1/255 units), with ``adversarial_steps`` steps.
    """

    # evaluation-only settings: a test of a checkpoint takes them from the config (shared_utils.cli)
    test_time_hparams = ("attack_eps", "attack_alpha", "attack_steps")

    def __init__(self, num_classes: int = 100, width: int = 32, dim: int = 128, lr: float = 1e-3,
                 weight_decay: float = 5e-4, margin: float = 0.3, label_smoothing: float = 0.1,
                 attack_eps: float = 8, attack_alpha: float = 2, attack_steps: int = 10,
                 adversarial_eps: float = 0, adversarial_steps: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = ReIDNet(num_classes, width=width, dim=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _losses(self, x: Tensor, pids: Tensor) -> tuple[Tensor, Tensor]:
        pooled, logits = self.net.train_outputs(x)
        return (F.cross_entropy(logits, pids, label_smoothing=self.hparams.label_smoothing),
                batch_hard_triplet(pooled, pids, self.hparams.margin))

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, pids, _ = batch
        ce, triplet = self._losses(x, pids)
        loss = ce + triplet
        if self.hparams.adversarial_eps:
            eps = from_255(self.hparams.adversarial_eps)
            adv = reid_push(self.net, x, anchors=None, eps=eps, alpha=eps / 2, steps=self.hparams.adversarial_steps)
            ce_adv, triplet_adv = self._losses(adv, pids)
            loss = loss + ce_adv + triplet_adv
            self.log("train/adv_loss", ce_adv + triplet_adv)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ce", ce)
        self.log("train/triplet", triplet)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_test_epoch_start(self) -> None:
        self._gallery: dict[str, list[Tensor]] = {"features": [], "pids": [], "camids": []}
        self._query: dict[str, list[Tensor]] = {k: [] for k in ("features", "push", "pull", "pids", "camids",
                                                                "targets")}

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, pids, camids = batch
        with torch.inference_mode(False):
            x = x.clone()
        with torch.no_grad():
            features = self.net(x)
        if dataloader_idx == 0:
            for key, value in (("features", features), ("pids", pids), ("camids", camids)):
                self._gallery[key].append(value.cpu())
            return
        gallery = torch.cat(self._gallery["features"]).to(x.device)
        gallery_pids = torch.cat(self._gallery["pids"]).to(x.device)
        eps, alpha = from_255(self.hparams.attack_eps), from_255(self.hparams.attack_alpha, "alpha")
        # untargeted: away from the mean gallery embedding of the query's identity (its own clean embedding
        # when the gallery has none); targeted: towards the next query's identity in the batch
        anchors = torch.stack([gallery[gallery_pids == p].mean(0) if (gallery_pids == p).any() else f
                               for p, f in zip(pids, features)])
        targets = pids.roll(1)
        target_anchors = torch.stack([gallery[gallery_pids == t].mean(0) if (gallery_pids == t).any() else f
                                      for t, f in zip(targets, features.roll(1, dims=0))])
        with torch.enable_grad():
            push = reid_push(self.net, x, anchors=anchors, eps=eps, alpha=alpha, steps=self.hparams.attack_steps)
            pull = reid_pull(self.net, x, targets=target_anchors, eps=eps, alpha=alpha,
                             steps=self.hparams.attack_steps)
        if batch_idx == 0:
            self._visualize(x, push, pull)
        with torch.no_grad():
            for key, value in (("features", features), ("push", self.net(push)), ("pull", self.net(pull)),
                               ("pids", pids), ("camids", camids), ("targets", targets)):
                self._query[key].append(value.cpu())

    def on_test_epoch_end(self) -> None:
        gallery = {k: torch.cat(v) for k, v in self._gallery.items()}
        query = {k: torch.cat(v) for k, v in self._query.items()}
        g_pids, g_cams = gallery["pids"].numpy(), gallery["camids"].numpy()
        q_pids, q_cams = query["pids"].numpy(), query["camids"].numpy()
        metrics = {}
        for name, key in (("", "features"), ("_push", "push")):
            distances = torch.cdist(query[key], gallery["features"]).numpy()
            cmc, mean_ap = market_cmc_map(distances, q_pids, g_pids, q_cams, g_cams)
            metrics[f"rank1{name}"], metrics[f"map{name}"] = 100 * float(cmc[0]), 100 * float(mean_ap)
        # targeted success: the top-1 gallery match (same-camera same-identity entries excluded, as ranked)
        # has the target identity
        distances = torch.cdist(query["pull"], gallery["features"])
        excluded = (gallery["pids"][None] == query["pids"][:, None]) & (gallery["camids"][None] ==
                                                                      query["camids"][:, None])
        top1 = distances.masked_fill(excluded, float("inf")).argmin(dim=1)
        metrics["pull_success"] = 100 * float((gallery["pids"][top1] == query["targets"]).float().mean())
        for name, value in metrics.items():
            self.log(f"test/{name}", value)

    def _visualize(self, x: Tensor, push: Tensor, pull: Tensor, n: int = 8) -> None:
        """Per attack: clean queries | attacked | amplified perturbation."""
        n = min(n, len(x))
        for name, adv in (("push", push), ("pull", pull)):
            tiles = torch.cat([x[:n], adv[:n], amplified(x[:n], adv[:n])]).detach().cpu()
            log_image(self.logger, f"test/{name}", image_grid(tiles, nrow=n))
