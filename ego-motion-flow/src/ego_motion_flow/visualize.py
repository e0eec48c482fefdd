"""Pictures of a separation: image | flow | rigid flow | residual | moving mask, one row per pair.

Flow, rigid flow and residual share one colour-wheel scale (the flow's largest magnitude), so a residual
that looks faint is small compared with the flow, as it should read.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ego_motion_flow.metrics import flow_to_color


def _color(flow: Tensor, max_magnitude: float) -> Tensor:
    picture = torch.as_tensor(flow_to_color(flow.detach().float().cpu(), max_magnitude=max_magnitude))
    return picture.float() / 255 if picture.dtype == torch.uint8 else picture.float()


def separation_panel(image: Tensor, flow: Tensor, rigid_flow: Tensor | None, moving: Tensor | None) -> Tensor:
    """One row (3 x H x 5W, [0, 1]); a part the method does not give is gray."""
    image = image.detach().float().cpu()
    gray = torch.full_like(image, 0.5)
    scale = max(float(flow.detach().norm(dim=0).max()), 1e-6)
    parts = [image, _color(flow, scale)]
    if rigid_flow is None:
        parts += [gray, gray]
    else:
        parts += [_color(rigid_flow, scale), _color(flow - rigid_flow, scale)]
    if moving is None:
        parts.append(gray)
    else:  # red over a darkened image
        mask = moving.detach().float().cpu()
        red = torch.stack([torch.ones_like(mask), torch.zeros_like(mask), torch.zeros_like(mask)])
        parts.append(0.4 * image * (1 - mask) + red * mask + 0.4 * image * mask)
    return torch.cat(parts, dim=2)
