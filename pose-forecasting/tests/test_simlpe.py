"""siMLPe against the official Human3.6M checkpoint and its recorded outputs (``tests/data``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from pose_forecasting.models.simlpe import SiMLPe, dct_matrices

REFERENCE = FIXTURES / "simlpe_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as arrays:
        return {k: arrays[k] for k in arrays.files}


def test_parameter_count() -> None:
    assert sum(p.numel() for p in SiMLPe().parameters()) == 137_580


def test_dct_is_orthonormal_and_not_saved() -> None:
    dct, idct = dct_matrices(50)
    torch.testing.assert_close(dct @ idct, torch.eye(50), atol=1e-6, rtol=0)
    assert not any(name in SiMLPe().state_dict() for name in ("dct", "idct"))


def test_initial_model_holds_last_frame() -> None:
    torch.manual_seed(0)
    history = torch.randn(2, 50, 22, 3)
    out = SiMLPe()(history)
    assert out.shape == (2, 25, 22, 3)
    torch.testing.assert_close(out, history[:, -1:].expand_as(out), atol=1e-6, rtol=0)


def test_official_checkpoint_reproduces_official_output(reference: dict[str, np.ndarray]) -> None:
    model = SiMLPe(weights=str(REFERENCE)).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(reference["input_22_m"]).reshape(16, 50, 22, 3))
    error = (out.reshape(16, 25, 66) - torch.from_numpy(reference["output_22_m"])).abs().max().item()
    assert error < 1e-5, f"max abs error {error:.2e} m"


def test_old_key_names_in_pth(reference: dict[str, np.ndarray], tmp_path: Path) -> None:
    old = {k.removeprefix("state_dict/").replace("motion_mlp.mlps.", "motion_transformer.transformer."):
           torch.from_numpy(v) for k, v in reference.items() if k.startswith("state_dict/")}
    assert any(k.startswith("motion_transformer.transformer.47.") for k in old)
    torch.save(old, tmp_path / "h36m_model.pth")
    history = torch.from_numpy(reference["input_22_m"]).reshape(16, 50, 22, 3)
    with torch.no_grad():
        expected = SiMLPe(weights=str(REFERENCE)).eval()(history)
        torch.testing.assert_close(SiMLPe(weights=str(tmp_path / "h36m_model.pth")).eval()(history), expected,
                                   atol=0, rtol=0)


def test_wrong_files_name_the_file_and_keys(tmp_path: Path) -> None:
    partial = {k: v for k, v in SiMLPe(num_blocks=2).state_dict().items() if not k.startswith("motion_fc_out")}
    torch.save({"model": partial | {"head.weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial\.pth.*missing.*motion_fc_out\.bias.*unexpected.*head\.weight"):
        SiMLPe(weights=str(tmp_path / "partial.pth"))
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pth"):
        SiMLPe(weights=str(tmp_path / "notes.pth"))
    with pytest.raises(ValueError, match=r"missing\.npz"):
        SiMLPe(weights=str(tmp_path / "missing.npz"))


def test_loss_decreases_on_random_walk() -> None:
    torch.manual_seed(0)
    # Random walk in velocity: smooth sequences whose continuation the model can fit.
    motion = (0.002 * torch.randn(4, 60, 22, 3)).cumsum(1).cumsum(1)
    history, future = motion[:, :50], motion[:, 50:]
    model = SiMLPe()
    # A small rate: the blocks' layer norms turn the first steps of the near-zero FCs into large features.
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-5)
    losses = []
    for _ in range(20):
        loss = model.loss(history, future)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


def test_module_weights_argument_loads_the_official_checkpoint(reference):
    """`--model.init_args.weights <file>`: the name users of the official checkpoints rely on."""
    from pose_forecasting.methods.module import ForecastModule
    from pose_forecasting.models.baselines import ZeroVelocity

    module = ForecastModule(SiMLPe(), weights=str(REFERENCE)).eval()
    with torch.no_grad():
        out = module.forecast({"history": torch.from_numpy(reference["input_22_m"]).reshape(16, 50, 22, 3)})[0]
    assert float((out.reshape(16, 25, 66) - torch.from_numpy(reference["output_22_m"])).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="ZeroVelocity has no official checkpoint format"):
        ForecastModule(ZeroVelocity(), weights=str(REFERENCE))
