import os

import pytest
import torch

# Triton decides at import whether kernels compile (GPU) or run in its interpreter (CPU
# tensors): without a GPU, interpret, so that every kernel is tested against its reference.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; the kernels are tested in Triton's interpreter here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
