"""Precomputed feature maps (data/features.py): LangSplat's mask features gathered through its segmentation maps,
dense .npy maps upsampled by their integer factor, and DatasetFormatError naming the file and shapes otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_gaussians.data.features import LangSplatFeatures, NpyFeatures
from shared_utils.datasets import DatasetFormatError

# 4 masks with 2-dim features: masks 0, 1 belong to level 0, masks 2, 3 to level 1 (global row indices)
MASK_FEATURES = np.array([[1, 10], [2, 20], [3, 30], [4, 40]], np.float16)
SEG_LEVEL_0 = [[0, 0, 1], [-1, 1, 1]]
SEG_LEVEL_1 = [[2, -1, 3], [3, 3, 2]]


def _langsplat(folder, seg=None, features=MASK_FEATURES, stem="frame"):
    seg = np.array([SEG_LEVEL_0, SEG_LEVEL_1], np.float32) if seg is None else seg  # float32, as LangSplat saves
    np.save(folder / f"{stem}_f.npy", features)
    np.save(folder / f"{stem}_s.npy", seg)


def test_langsplat_gathers_the_level_rows_and_masks_no_mask(tmp_path):
    _langsplat(tmp_path)
    features, valid = LangSplatFeatures(tmp_path, level=1).load("frame", 2, 3)
    assert features.shape == (2, 2, 3) and features.dtype == torch.float32 and valid.dtype == torch.bool
    np.testing.assert_array_equal(valid.numpy(), [[True, False, True], [True, True, True]])
    np.testing.assert_array_equal(features[1].numpy(), [[30, 0, 40], [40, 40, 30]])  # 0 where no mask
    features, valid = LangSplatFeatures(tmp_path, level=0).load("frame", 2, 3)
    np.testing.assert_array_equal(features[0].numpy(), [[1, 1, 2], [0, 2, 2]])
    assert not valid[1, 0] and valid.sum() == 5


def test_langsplat_map_k_times_the_image_is_subsampled_nearest(tmp_path):
    seg = np.full((2, 4, 6), -1, np.int32)
    seg[1, 1::2, 1::2] = SEG_LEVEL_1  # the centre pixel (k // 2 = 1) of each 2 x 2 block holds the label
    _langsplat(tmp_path, seg)
    features, valid = LangSplatFeatures(tmp_path).load("frame", 2, 3)
    np.testing.assert_array_equal(features[0].numpy(), [[3, 0, 4], [4, 4, 3]])
    np.testing.assert_array_equal(valid.numpy(), np.array(SEG_LEVEL_1) >= 0)


@pytest.mark.parametrize(("seg", "features", "message"), [
    (np.zeros((2, 3, 3)), MASK_FEATURES, r"frame_s.npy: shape \(2, 3, 3\): expected \(L, 2, 3\)"),
    (np.zeros((2, 3)), MASK_FEATURES, r"frame_s.npy: shape \(2, 3\): expected \(L, 2, 3\)"),
    (np.zeros((1, 2, 3)), MASK_FEATURES, r"frame_s.npy: shape \(1, 2, 3\): expected \(L, 2, 3\) with L > level 1"),
    (np.full((2, 2, 3), 4), MASK_FEATURES, r"frame_s.npy: level 1 holds mask index 4: expected .* below M = 4, .*"
                                           r"frame_f.npy \(shape \(4, 2\)\)"),
    (np.full((2, 2, 3), 0.5), MASK_FEATURES, r"frame_s.npy: level 1 .*expected integer mask indices"),
    (np.full((2, 2, 3), -2), MASK_FEATURES, r"frame_s.npy: level 1 .*expected integer mask indices >= -1"),
    (None, MASK_FEATURES[None], r"frame_f.npy: shape \(1, 4, 2\): expected \(M, D\)"),
])
def test_langsplat_errors_name_file_and_shapes(tmp_path, seg, features, message):
    _langsplat(tmp_path, seg, features)
    with pytest.raises(DatasetFormatError, match=message):
        LangSplatFeatures(tmp_path).load("frame", 2, 3)


def test_missing_files_and_folders_are_named(tmp_path):
    _langsplat(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"other_f.npy not found: .*found in .*frame_f.npy"):
        LangSplatFeatures(tmp_path).load("other", 2, 3)
    with pytest.raises(DatasetFormatError, match=r"absent: feature folder not found"):
        NpyFeatures(tmp_path / "absent")
    with pytest.raises(DatasetFormatError, match=r"frame.npy not found"):
        NpyFeatures(tmp_path).load("frame", 2, 3)


def test_npy_features_at_image_size_are_returned_as_is(tmp_path):
    features = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float16)
    np.save(tmp_path / "frame.npy", features)
    loaded, valid = NpyFeatures(tmp_path).load("frame", 2, 3)
    assert loaded.shape == (5, 2, 3) and loaded.dtype == torch.float32 and bool(valid.all())
    np.testing.assert_array_equal(loaded.permute(1, 2, 0).numpy(), features.astype(np.float32))


def test_npy_features_at_a_fraction_are_upsampled_bilinearly(tmp_path):
    # (1, 2, 2) map for a 2 x 4 image (k = 2): channel 0 a ramp 0 -> 1 along x, channel 1 constant
    np.save(tmp_path / "frame.npy", np.array([[[0.0, 7.0], [1.0, 7.0]]], np.float32))
    loaded, valid = NpyFeatures(tmp_path).load("frame", 2, 4)
    assert loaded.shape == (2, 2, 4) and valid.shape == (2, 4) and bool(valid.all())
    # cell centres at pixels 1 and 3 (centres at +0.5): 0, 0.25, 0.75, 1 (clamped at the borders)
    np.testing.assert_allclose(loaded[0].numpy(), [[0, 0.25, 0.75, 1]] * 2)
    np.testing.assert_allclose(loaded[1].numpy(), np.full((2, 4), 7.0))


@pytest.mark.parametrize(("shape", "dtype"), [((1, 3, 4), np.float32),  # 2/1 != 4/3
                                              ((2, 2, 4), np.float32),  # k = 1 rows, k = 2 columns
                                              ((3, 4), np.float32), ((2, 4, 3), np.int32)])
def test_npy_features_of_no_integer_fraction_are_refused(tmp_path, shape, dtype):
    np.save(tmp_path / "frame.npy", np.zeros(shape, dtype))
    with pytest.raises(DatasetFormatError, match=rf"frame.npy: shape \({', '.join(map(str, shape))}\) .*expected "
                                                 r"\(2, 4, D\) or \(2/k, 4/k, D\)"):
        NpyFeatures(tmp_path).load("frame", 2, 4)
