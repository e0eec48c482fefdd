"""STS-GCN: Sofianos et al., "Space-Time-Separable Graph Convolutional Network for Pose Forecasting",
ICCV 2021 (official code github.com/FraLuca/STSGCN, ``model.py``).

The encoder is a stack of ST-GCNN layers whose graph convolution factorises the space-time adjacency
(paper Eq. 3-4): a learnable temporal adjacency per joint (``T``, V x T x T) followed by a learnable
spatial adjacency per frame (``A``, T x V x V), then a 1x1 convolution over channels. The decoder, the
TXCNN (temporal extrapolator), treats the frames as channels and maps ``input_frames`` to
``output_frames`` with 3x3 convolutions over (coordinate, joint). Defaults are the official Human3.6M
3D configuration: 10 input frames, channels 3 -> 64 -> 32 -> 64 -> 3, 4 TXCNN layers, 3x3 kernels,
ST-GCNN dropout 0.1, TXCNN dropout 0. Module names follow the official ``Model``.

Units: the official network reads and writes millimetres; here it reads and writes metres. Its encoder
and decoder each end in BatchNorm, so the output scale is a learned affine, which at metres stays near
its initial values (from scratch at the official lr, the metre network fits smooth synthetic motion
several times faster than the millimetre one). :meth:`STSGCN.loss` is the official MPJPE in millimetres
(metres x 1000): the logged value reads as in the paper, and the official L2 weight decay (1e-5, added
to the gradient by Adam) stays as small next to the loss gradient as in the official training. Adam's
steps themselves do not depend on that factor (up to its eps).

Evaluation: the paper reports the error averaged over the forecast horizon up to each time step; this
project reports it per frame (the metric side lives outside the model).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pose_forecasting.models.interfaces import Forecaster

MM_PER_M = 1000.0


class ConvTemporalGraphical(nn.Module):
    """The space-time-separable graph convolution (paper Eq. 4): ``X T`` over time, then ``A`` over joints.

    ``T`` (V, T, T) mixes frames for each joint, ``A`` (T, V, V) mixes joints for each frame; both are
    learned from scratch (graph-agnostic), initialised U(-1/sqrt(n), 1/sqrt(n)) as the official code.
    """

    def __init__(self, time_dim: int, joints_dim: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(time_dim, joints_dim, joints_dim))
        self.T = nn.Parameter(torch.empty(joints_dim, time_dim, time_dim))
        nn.init.uniform_(self.A, -1 / math.sqrt(joints_dim), 1 / math.sqrt(joints_dim))
        nn.init.uniform_(self.T, -1 / math.sqrt(time_dim), 1 / math.sqrt(time_dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V)`` -> ``(N, C, T, V)``."""
        x = torch.einsum("nctv,vtq->ncqv", x, self.T)
        return torch.einsum("nctv,tvw->nctw", x, self.A)


class ST_GCNN_layer(nn.Module):  # noqa: N801 (the official class name)
    """One encoder layer: graph convolution, Conv2d(1x1) + BatchNorm + dropout, residual, PReLU."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, joints_dim: int, dropout: float) -> None:
        super().__init__()
        self.gcn = ConvTemporalGraphical(time_dim, joints_dim)
        self.tcn = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        # A 1x1 projection on the skip path when the channel count changes (all four layers here).
        if in_channels != out_channels:
            self.residual: nn.Module = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1),
                                                     nn.BatchNorm2d(out_channels))
        else:
            self.residual = nn.Identity()
        self.prelu = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.tcn(self.gcn(x)) + self.residual(x))


class CNN_layer(nn.Module):  # noqa: N801 (the official class name)
    """One TXCNN layer: Conv2d with frames as channels, kernel 3x3 over (coordinate, joint), BatchNorm,
    dropout; the padding keeps the (coordinate, joint) size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class STSGCN(Forecaster):
    """STS-GCN forecaster (mask-unaware: give it an already-filled history, e.g. ``masking.fill_missing``).

    ``forward(history)``: ``(B, T_in, V, 3)`` metres with ``T_in >= input_frames`` (the last
    ``input_frames`` are used) -> ``(B, output_frames, V, 3)`` metres, absolute positions (the official
    model predicts positions, not offsets from the last frame).
    """

    CHANNELS = (3, 64, 32, 64, 3)  # the official Human3.6M 3D encoder

    def __init__(self, input_frames: int = 10, output_frames: int = 25, num_joints: int = 22,
                 st_gcnn_dropout: float = 0.1, n_txcnn_layers: int = 4, txc_kernel_size: int = 3,
                 txc_dropout: float = 0.0) -> None:
        super().__init__()
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.num_joints = num_joints
        self.st_gcnns = nn.ModuleList(
            ST_GCNN_layer(c_in, c_out, input_frames, num_joints, st_gcnn_dropout)
            for c_in, c_out in zip(self.CHANNELS[:-1], self.CHANNELS[1:])
        )
        self.txcnns = nn.ModuleList(
            CNN_layer(input_frames if i == 0 else output_frames, output_frames, txc_kernel_size, txc_dropout)
            for i in range(n_txcnn_layers)
        )
        self.prelus = nn.ModuleList(nn.PReLU() for _ in range(n_txcnn_layers))

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        """Forecast ``(B, output_frames, V, 3)`` metres; ``mask`` is ignored (the model is mask-unaware)."""
        if history.shape[1] < self.input_frames:
            raise ValueError(f"STS-GCN needs at least {self.input_frames} history frames, got {history.shape[1]}")
        x = history[:, -self.input_frames:].permute(0, 3, 1, 2)  # (N, C, T, V)
        for layer in self.st_gcnns:
            x = layer(x)
        x = x.permute(0, 2, 1, 3)  # frames become the TXCNN channels: (N, T, C, V)
        x = self.prelus[0](self.txcnns[0](x))
        for cnn, prelu in zip(self.txcnns[1:], self.prelus[1:]):
            x = prelu(cnn(x)) + x
        return x.permute(0, 1, 3, 2)

    def loss(self, history: Tensor, future: Tensor, mask: Tensor | None = None) -> Tensor:
        """The official training loss: MPJPE (mean L2 over joints and all ``output_frames``) in millimetres."""
        return (self(history, mask) - future).norm(dim=-1).mean() * MM_PER_M
