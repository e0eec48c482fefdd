"""Uncertainty estimation for camera bird's-eye-view (BEV) segmentation."""
