"""Supervised ego-motion / object-motion separation: RAFT-small plus a rigid-flow head and a moving-mask head.

RAFT-small estimates the full optical flow. Two heads read what its update operator ends with, at feature
resolution: the last GRU state (the recurrent summary of matching evidence), the context features (appearance of
frame 1) and the final flow. One head predicts the rigid (ego) flow, the flow every pixel would have if the scene
were static; the other predicts moving-object logits. The rigid flow is a prediction of its own, not a residual on
the full flow: on moving objects it must differ from the observed flow, and be inferred from the static
surroundings, which is why its head stacks dilated 3x3 convolutions (dilations 1, 2, 4: a 15-cell receptive field,
60 px at 1/4 resolution) to see past object boundaries. Both are upsampled bilinearly to full resolution, as
RAFT-small's flow.

Supervision (``separation_loss``): RAFT's sequence loss on the full flow, L1 on the rigid flow against the
ground-truth rigid flow (backprojected depth moved by the ground-truth camera motion, see INTERFACE.md), binary
cross-entropy on the moving mask; each term averaged over its own validity mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_motion_flow.models.raft import RAFTSmall, sequence_loss, upsample_flow


def head(c_in: int, width: int, c_out: int, dilations: tuple[int, ...]) -> nn.Sequential:
    """3x3 conv + ReLU per dilation, then a 1x1 output conv."""
    layers: list[nn.Module] = []
    for d in dilations:
        layers += [nn.Conv2d(c_in, width, 3, padding=d, dilation=d), nn.ReLU()]
        c_in = width
    return nn.Sequential(*layers, nn.Conv2d(width, c_out, 1))


class SeparationNet(nn.Module):
    """RAFT-small with rigid-flow and moving-mask heads.

    ``forward(image1, image2, iters=None) -> dict``: ``flow`` (final full flow B x 2 x H x W), ``flow_predictions``
    (list, one per RAFT update), ``rigid_flow`` (B x 2 x H x W, pixels), ``moving_logits`` (B x 1 x H x W).
    """

    def __init__(self, raft: RAFTSmall | None = None, head_width: int = 32) -> None:
        super().__init__()
        self.raft = raft if raft is not None else RAFTSmall()
        c_in = self.raft.hidden_dim + self.raft.context_dim + 2
        self.rigid_head = head(c_in, head_width, 2, (1, 2, 4))
        self.moving_head = head(c_in, head_width, 1, (1, 1))

    def forward(self, image1: Tensor, image2: Tensor, iters: int | None = None) -> dict[str, Tensor | list[Tensor]]:
        out = self.raft(image1, image2, iters)
        x = torch.cat([out.hidden, out.context, out.flow_low], 1)
        f = self.raft.downsample
        moving = F.interpolate(self.moving_head(x), scale_factor=f, mode="bilinear", align_corners=False)
        return {"flow": out.flow, "flow_predictions": out.flow_predictions,
                "rigid_flow": upsample_flow(self.rigid_head(x), f), "moving_logits": moving}


def separation_loss(out: dict, batch: dict, flow_weight: float = 1.0, rigid_weight: float = 1.0,
                    moving_weight: float = 1.0, pos_weight: float | None = None, gamma: float = 0.8,
                    max_flow: float = 400.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the three supervised terms; returns ``(loss, {"flow", "rigid", "moving"})``.

    - flow: :func:`sequence_loss` (RAFT eq. 7) over ``batch["flow_valid"]``;
    - rigid: per-pixel L1 norm ``|u - u_gt| + |v - v_gt|`` averaged over ``batch["rigid_valid"]``;
    - moving: BCE-with-logits averaged over ``batch["moving_valid"]``; ``pos_weight`` up-weights the moving
      (positive) pixels, which are a few percent of a driving image (e.g. #static / #moving of the training set).
    A term whose mask is empty in the batch (e.g. KITTI odometry has no flow) contributes 0.
    """
    flow = sequence_loss(out["flow_predictions"], batch["flow"], batch["flow_valid"], gamma, max_flow)

    rigid_valid = batch["rigid_valid"]
    rigid_error = (out["rigid_flow"] - batch["rigid_flow"]).abs().sum(1)
    rigid = (rigid_error * rigid_valid).sum() / rigid_valid.sum().clamp(min=1)

    moving_valid = batch["moving_valid"]
    logits = out["moving_logits"][:, 0]
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, batch["moving"].float(), reduction="none", pos_weight=weight)
    moving = (bce * moving_valid).sum() / moving_valid.sum().clamp(min=1)

    loss = flow_weight * flow + rigid_weight * rigid + moving_weight * moving
    return loss, {"flow": flow.detach(), "rigid": rigid.detach(), "moving": moving.detach()}
