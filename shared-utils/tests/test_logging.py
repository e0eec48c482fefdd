
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from shared_utils.logging import colorize, heatmap_overlay, image_grid, line_plot, log_image


def test_image_grid_places_each_image():
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 3, 4, 6) / 10
    grid = image_grid(images, nrow=3, padding=1, pad_value=1.0)
    assert grid.shape == (3, 2 * 5 + 1, 3 * 7 + 1)
    for i in range(5):
        top, left = 1 + (i // 3) * 5, 1 + (i % 3) * 7
        assert torch.all(grid[:, top:top + 4, left:left + 6] == i / 10)
    assert torch.all(grid[:, 6:10, 15:21] == 1.0)  # the empty sixth cell is padding
    with pytest.raises(ValueError, match="B, C, H, W"):
        image_grid(torch.zeros(3, 4, 4))


def test_colorize_spans_the_colour_map():
    rgb = colorize(np.array([[0.0, 1.0]]))
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] < 50  # low = blue in JET (RGB order)
    assert rgb[0, 1, 0] > 100 and rgb[0, 1, 2] < 50  # high = red


def test_heatmap_overlay_resizes_and_blends():
    image = torch.zeros(3, 32, 48)
    heat = torch.zeros(4, 6)
    heat[0, 0] = 1.0
    out = heatmap_overlay(image, heat, alpha=0.5)
    assert out.shape == (3, 32, 48) and 0 <= out.min() and out.max() <= 0.5 + 1e-6
    assert out[0, 0, 0] > out[0, -1, -1]  # the hot corner is red, the rest blue


def test_line_plot_draws_each_curve(tmp_path):
    x = np.linspace(0, 1, 20)
    img = line_plot({"a": (x, x), "b": (x, 1 - x)}, title="t", xlabel="x", ylabel="y", size=(200, 300))
    assert img.shape == (3, 200, 300)
    pixels = (img.permute(1, 2, 0) * 255).round().numpy().astype(int)
    for colour in [(31, 119, 180), (255, 127, 14)]:
        assert (np.abs(pixels - colour).sum(-1) < 10).sum() > 50
    logger = TensorBoardLogger(tmp_path, name="plots")
    log_image(logger, "curves", img)
    logger.experiment.flush()
    assert list((tmp_path / "plots").rglob("events.out.tfevents.*"))
