"""Rollout pictures: captions, strips, GIFs, and what lands in a TensorBoard events file."""

import cv2
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from vlm_robot_control.visualize import BAND_RGB, GAP, SCALE, caption, gif_bytes, log_rollouts, strip

TEXT = "pick the red block and place it in the blue bowl"


def video(t: int = 10, h: int = 16, w: int = 20) -> np.ndarray:
    """Frame i is flat colour (20 i, 255 - 20 i, 7 i): every frame tells which one it is."""
    colours = np.array([[20 * i, 255 - 20 * i, 7 * i] for i in range(t)], np.uint8)
    return np.broadcast_to(colours[:, None, None, :], (t, h, w, 3)).copy()


def test_caption_upsamples_the_frame_above_a_text_band():
    frame = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    out = caption(frame, TEXT, ok=True, scale=3)
    assert out.dtype == np.uint8 and out.shape[1:] == (60, 3) and out.shape[0] > 48
    assert np.array_equal(out[:48], np.repeat(np.repeat(frame, 3, axis=0), 3, axis=1))
    band = out[48:]
    assert (band == 255).all(axis=-1).any(), "no white text drawn in the band"


def test_caption_wraps_long_text_to_the_width():
    frame = np.zeros((16, 20, 3), np.uint8)
    short, long = caption(frame, "go", scale=2), caption(frame, TEXT, scale=2)
    assert long.shape[1] == short.shape[1] == 40
    assert long.shape[0] > short.shape[0] + 20, "a long instruction must wrap onto several lines"


@pytest.mark.parametrize("ok", [True, False, None])
def test_caption_band_colour_tells_success(ok):
    out = caption(np.zeros((16, 20, 3), np.uint8), "go", ok=ok)
    assert tuple(out[-1, -1]) == BAND_RGB[ok]  # the bottom-right corner holds no text
    assert len(set(BAND_RGB.values())) == 3


def test_caption_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        caption(np.zeros((16, 20, 3), np.float32), "go")


def test_strip_shows_first_and_last_frame_evenly_spaced():
    frames = video(t=10)
    out = strip(frames, TEXT, ok=False, n=4)  # frames 0, 3, 6, 9
    tile_w = 20 * SCALE
    assert out.dtype == np.uint8 and out.shape[1] == 4 * tile_w + 3 * GAP
    tiles = [out[0, i * (tile_w + GAP)] for i in range(4)]
    assert [tuple(t) for t in tiles] == [tuple(frames[i, 0, 0]) for i in (0, 3, 6, 9)]
    assert (out[: 16 * SCALE, tile_w:tile_w + GAP] == 255).all(), "white gap between tiles"
    assert tuple(out[-1, -1]) == BAND_RGB[False]


def test_strip_of_a_short_rollout_shows_every_frame_once():
    frames = video(t=3)
    out = strip(frames, "go", n=6)
    assert out.shape[1] == 3 * 20 * SCALE + 2 * GAP
    assert tuple(out[0, -1]) == tuple(frames[-1, 0, 0])


def test_gif_bytes_decodes_to_the_captioned_frames():
    frames = video(t=5)
    gif = gif_bytes(frames, TEXT, ok=True, fps=10)
    assert gif.startswith(b"GIF8")
    decoded, animation = cv2.imdecodeanimation(np.frombuffer(gif, np.uint8))
    assert decoded and len(animation.frames) == 5
    assert list(animation.durations) == [100] * 5
    for frame, got in zip(frames, animation.frames):
        expected = caption(frame, TEXT, ok=True)
        assert got.shape[:2] == expected.shape[:2]
        # A 256-colour palette fitted to these few flat colours (and the caption) keeps them exact.
        assert np.abs(cv2.cvtColor(got[..., :3], cv2.COLOR_BGR2RGB).astype(int) - expected).max() <= 2


def test_log_rollouts_writes_strips_and_gifs_to_tensorboard(tmp_path):
    rollouts = [(video(t=8), TEXT, True), (video(t=5), "stack the green block on the yellow block", False)]
    writer = SummaryWriter(str(tmp_path))
    log_rollouts(writer, "val/rollouts", rollouts, step=3)
    writer.close()

    events = EventAccumulator(str(tmp_path), size_guidance={IMAGES: 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["val/rollouts/gif_0", "val/rollouts/gif_1", "val/rollouts/strips"]

    (strips,) = events.Images("val/rollouts/strips")
    png = cv2.imdecode(np.frombuffer(strips.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    expected = [strip(frames, text, ok) for frames, text, ok in rollouts]
    assert strips.step == 3 and png.shape == (expected[0].shape[0] + GAP + expected[1].shape[0], 6 * 40 + 5 * GAP, 3)

    for i, (frames, text, ok) in enumerate(rollouts):
        (gif,) = events.Images(f"val/rollouts/gif_{i}")
        assert gif.step == 3 and gif.encoded_image_string == gif_bytes(frames, text, ok)
        assert (gif.height, gif.width) == caption(frames[0], text, ok).shape[:2]
