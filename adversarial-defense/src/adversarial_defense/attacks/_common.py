"""What every attack shares: the model's mode is restored, the inputs are untouched, eps units are checked.

Units: every attack function takes ``eps`` and step sizes in image units, images being in [0, 1]
(``8 / 255``, not ``8``). Configs state them in 1/255 units (``eps: 8``), and ``from_255`` converts;
each side refuses the other's values, so ``eps=8`` to a function or ``eps: 0.03`` in a config is an
error, not a silently useless (or image-destroying) attack.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from shared_utils.cli import ConfigFileError


class EpsUnitError(ConfigFileError):
    """An eps or step size in the wrong unit (1/255 units where image units are expected, or back); a
    ``ValueError``, and from a config a one-line CLI error (``shared_utils.cli.USER_ERRORS``)."""


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (BatchNorm statistics frozen, dropout off), restoring every submodule's own
    mode afterwards: adversarial training calls attacks on a model in train mode, and a model may hold
    frozen parts that are in eval mode on purpose."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.train(training)


@contextmanager
def attacking(model: nn.Module) -> Iterator[None]:
    """Eval mode (``eval_mode``) and autograd on, even inside ``torch.no_grad`` or ``torch.inference_mode``
    (Lightning's validation and test steps): the context every attack runs in."""
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        yield


def private_images(x: Tensor) -> Tensor:
    """A private copy of a batch of [0, 1] images (made outside inference mode: an ordinary tensor autograd can
    use; the caller's tensor is never written to), after checking it is one."""
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) batch, got {tuple(x.shape)} {x.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"images must be in [0, 1] (the model normalises them itself), got values in "
                         f"[{x.min().item():.3g}, {x.max().item():.3g}]")
    with torch.inference_mode(False):
        return x.detach().clone()


def amplified(clean: Tensor, adversarial: Tensor) -> Tensor:
    """The perturbation of each image scaled to fill [0, 1] around mid-grey, for pictures."""
    delta = adversarial - clean
    return (0.5 + delta / (2 * delta.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8))).clamp(0, 1)


def check_eps(value: float, name: str = "eps") -> float:
    """``value`` in image units ([0, 1] images); a value above 1 is a 1/255-unit value given by mistake."""
    value = float(value)
    if not 0 <= value <= 1:
        raise EpsUnitError(f"{name}={value:g} is not in image units ([0, 1] images, e.g. 8/255 = {8 / 255:.4f}); "
                           f"a config states it in 1/255 units and converts it with from_255({value:g})")
    return value


def from_255(value: float, name: str = "eps") -> float:
    """A config value in 1/255 units (``eps: 8``) in image units (``8 / 255``). Values in (0, 0.1) are refused
    as ambiguous: the usual image-unit values (2/255 = 0.008 to 16/255 = 0.063) fall there, so ``eps: 0.03``
    is an image-unit value typed in a 1/255-unit field, not a tenth of a grey level (0.25 grey level is fine)."""
    value = float(value)
    if value < 0 or 0 < value < 0.1:
        raise EpsUnitError(f"{name}={value:g}: configs give {name} in 1/255 units (e.g. 8 for 8/255); a value "
                           f"in (0, 0.1) is ambiguous (image units by mistake?): write {value * 255:g} for "
                           f"{value:g} in image units")
    return value / 255
