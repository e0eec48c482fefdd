"""The kinds of model this package has, as base classes: what the Lightning module may ask of a model is
read from its type (``isinstance``), never by probing for attributes.

- :class:`Forecaster`: 3D history -> 3D future, mask-unaware. The caller fills missing frames
  (``data.masking.fill_missing``) and also passes the mask, which the model may use (the baselines start
  from the last observed frame) or ignore (siMLPe, STS-GCN).
- :class:`UncertainForecaster`: a forecaster that reads the mask instead (it is given the raw history with
  missing frames zeroed, so it cannot read what was not observed) and says how sure it is: a per-joint
  Gaussian sigma (the observation-aware model).
- :class:`Lifter2D`: noisy 2D keypoints -> 3D estimate of the observed frames and 3D forecast, both in the
  camera frame (the DSTformer).

All are plain ``nn.Module``s (no Lightning). Every model has ``input_frames`` and ``output_frames`` and may
load its paper's official checkpoint (:meth:`PoseModel.load_weights`; only siMLPe publishes one).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn


class PoseModel(nn.Module):
    """Base of every model: ``input_frames`` observed frames in, ``output_frames`` future frames out (25 fps)."""

    input_frames: int
    output_frames: int

    def load_weights(self, path: str | Path) -> None:
        """Loads the official checkpoint of the paper's code (``--model.init_args.weights``). Models whose paper
        published one override this; the others refuse with a message that names the alternative."""
        raise ValueError(f"model.init_args.weights={path}: {type(self).__name__} has no official checkpoint "
                         "format; use --ckpt_path for this project's checkpoints")


class Forecaster(PoseModel):
    """``forward(history (B, T_in, J, 3), mask (B, T_in) bool or None) -> (B, output_frames, J, 3)``, metres,
    world frame; ``loss(history, future, mask)``: its paper's training loss (training-free models have none).
    Mask-unaware: missing frames arrive filled by the caller."""

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def loss(self, history: Tensor, future: Tensor, mask: Tensor | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is training-free")


class UncertainForecaster(Forecaster):
    """A mask-aware forecaster: ``history`` holds zeros where ``mask`` is False and the model must not read
    them. ``forward_with_uncertainty`` adds sigma ``(B, output_frames, J)``, metres, of an isotropic 3D
    Gaussian on each predicted joint; ``forward`` is its mean."""

    def forward_with_uncertainty(self, history: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class Lifter2D(PoseModel):
    """``forward(keypoints_2d (B, T, J, 2), confidence (B, T, J), mask (B, T) or None) -> (estimate
    (B, input_frames, J, 3), forecast (B, output_frames, J, 3))``, metres, root-relative camera frame;
    ``loss(keypoints_2d, confidence, mask, target_observed, target_future)`` with camera-frame targets."""

    def forward(self, keypoints_2d: Tensor, confidence: Tensor, mask: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, keypoints_2d: Tensor, confidence: Tensor, mask: Tensor | None, target_observed: Tensor,
             target_future: Tensor) -> Tensor:
        raise NotImplementedError
