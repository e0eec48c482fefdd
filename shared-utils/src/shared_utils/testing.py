"""Pytest fixtures the projects' test suites share (import them into a ``conftest.py``; pytest finds them there)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for the tests' small tensors: on a busy 2-core machine, two threads spinning on each
    other make small-tensor tests many times slower (measured on adversarial-defense's attack tests: tens of
    times). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
