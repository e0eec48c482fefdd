"""Rollout pictures for TensorBoard: captioned frames, key-frame strips and animated GIFs.

Why pictures: a success rate says how often a policy fails, not how; a strip of key frames under
its instruction, banded green or red, shows at a glance whether it grasped the wrong block or
dropped the right one, and the GIF shows the motion. Drawn with OpenCV and NumPy only (no Pillow,
no moviepy). Frames are (H, W, 3) uint8 RGB, videos (T, H, W, 3).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

SCALE = 2  # small simulator renders (64-128 px) are unreadable at 1:1 next to the caption
GAP = 2  # white pixels between tiles
FONT, FONT_SCALE, MARGIN = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 4
BAND_RGB = {True: (30, 110, 40), False: (140, 30, 30), None: (64, 64, 64)}  # success / failure / unknown


def caption(frame: np.ndarray, text: str, ok: bool | None = None, scale: int = SCALE) -> np.ndarray:
    """The frame upsampled ``scale`` times (nearest, so pixels stay crisp) above a dark band with
    ``text`` wrapped to its width, green / red / grey for success / failure / unknown."""
    _check_frames(frame, ndim=3)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    big = _upsample(frame, scale)
    return np.concatenate([big, _band(text, big.shape[1], ok)])


def strip(frames: np.ndarray, text: str, ok: bool | None = None, n: int = 6) -> np.ndarray:
    """``n`` frames evenly spaced over the rollout, always its first and last (fewer when it is
    shorter), side by side with white gaps, over one caption band spanning the strip."""
    _check_frames(frames, ndim=4)
    if n < 2:
        raise ValueError(f"n must be >= 2 to show the first and the last frame, got {n}")
    picks = np.unique(np.linspace(0, len(frames) - 1, n).round().astype(int))
    tiles = _join([_upsample(frames[t], SCALE) for t in picks], axis=1)
    return np.concatenate([tiles, _band(text, tiles.shape[1], ok)])


def gif_bytes(frames: np.ndarray, text: str, ok: bool | None = None, fps: int = 10) -> bytes:
    """An endlessly looping animated GIF of the captioned frames, ``fps`` frames per second."""
    _check_frames(frames, ndim=4)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not hasattr(cv2, "imencodeanimation"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no cv2.imencodeanimation (added in 4.11): "
                           "install opencv-python-headless>=4.11 to write rollout GIFs")
    animation = cv2.Animation()
    animation.frames = [cv2.cvtColor(caption(f, text, ok), cv2.COLOR_RGB2BGR) for f in frames]
    animation.durations = [round(1000 / fps)] * len(frames)  # milliseconds per frame
    # No dithering, palette fitted to the frames: flat colours stay exact. The default (a fixed
    # palette, dithered) shifts every colour by ~17 levels on average and triples the file size.
    encoded, buf = cv2.imencodeanimation(".gif", animation, [cv2.IMWRITE_GIF_DITHER, 3])
    if not encoded:
        raise RuntimeError(f"cv2.imencodeanimation failed to encode {len(frames)} frames as a GIF")
    return buf.tobytes()


def log_rollouts(experiment: SummaryWriter, tag: str, rollouts: Sequence[tuple[np.ndarray, str, bool]],
                 step: int) -> None:
    """Log (frames, instruction, success) rollouts: their strips stacked in one image
    (``tag/strips``) and each one's GIF (``tag/gif_<i>``), which TensorBoard's image dashboard
    animates. ``experiment`` is a SummaryWriter (``TensorBoardLogger.experiment``).

    The GIFs go in as raw image summaries, as ``SummaryWriter.add_video`` does internally:
    ``add_image`` would re-encode them as a still PNG.
    """
    if not rollouts:
        raise ValueError(f"log_rollouts({tag!r}) got no rollouts")
    strips = [strip(frames, text, ok) for frames, text, ok in rollouts]
    experiment.add_image(f"{tag}/strips", _join(strips, axis=0), step, dataformats="HWC")
    for i, (frames, text, ok) in enumerate(rollouts):
        gif = gif_bytes(frames, text, ok)
        width, height = struct.unpack("<HH", gif[6:10])  # the GIF header's logical screen size
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        experiment._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=f"{tag}/gif_{i}", image=image)]),
                                                  step)


def _check_frames(frames: np.ndarray, ndim: int) -> None:
    layout = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
    if not isinstance(frames, np.ndarray) or frames.ndim != ndim or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"expected a {layout} uint8 RGB array, got {got}")
    if frames.size == 0:
        raise ValueError(f"expected a non-empty {layout} array, got shape {frames.shape}")


def _upsample(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def _join(images: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """Images side by side (axis=1) or stacked (axis=0) with white gaps, black-padded to one size."""
    size = max(im.shape[1 - axis] for im in images)
    gap_shape = [size, size, 3]
    gap_shape[axis] = GAP
    parts = []
    for i, im in enumerate(images):
        pad = [(0, 0)] * 3
        pad[1 - axis] = (0, size - im.shape[1 - axis])
        if i:
            parts.append(np.full(gap_shape, 255, np.uint8))
        parts.append(np.pad(im, pad))
    return np.concatenate(parts, axis=axis)


def _band(text: str, width: int, ok: bool | None) -> np.ndarray:
    """A band ``width`` pixels wide holding ``text`` word-wrapped in white (a word wider than the
    band is clipped)."""
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, FONT_SCALE, 1)
    line_h = text_h + baseline + 2
    lines = _wrap(text, width - 2 * MARGIN)
    band = np.empty((2 * MARGIN + len(lines) * line_h, width, 3), np.uint8)
    band[:] = BAND_RGB[None if ok is None else bool(ok)]  # numpy / torch booleans too
    for i, line in enumerate(lines):
        cv2.putText(band, line, (MARGIN, MARGIN + i * line_h + text_h), FONT, FONT_SCALE, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return band


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap by rendered width."""
    lines = [""]
    for word in text.split():
        candidate = f"{lines[-1]} {word}".lstrip()
        if lines[-1] and cv2.getTextSize(candidate, FONT, FONT_SCALE, 1)[0][0] > width:
            lines.append(word)
        else:
            lines[-1] = candidate
    return lines
