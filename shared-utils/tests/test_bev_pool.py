import pytest
import torch

from shared_utils.ops import bev_pool, bev_pool_reference, bev_pool_triton

GRID = (2, 5, 7)  # Z, Y, X
BATCH = 2
# The Triton tests run compiled on a GPU and in Triton's interpreter on CPU tensors otherwise
# (conftest.py sets TRITON_INTERPRET only without a GPU): compiled Triton cannot read CPU tensors.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_points(n: int, channels: int, dtype=torch.float32, device="cpu", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, channels, generator=g, dtype=dtype).to(device)
    # Some coordinates fall outside the grid (-1 and one past the end): they must be dropped.
    coords = torch.stack([
        torch.randint(0, BATCH, (n,), generator=g),
        torch.randint(0, GRID[0], (n,), generator=g),
        torch.randint(-1, GRID[1] + 1, (n,), generator=g),
        torch.randint(-1, GRID[2] + 1, (n,), generator=g),
    ], dim=1).to(device)
    return feats, coords


def brute_force(feats, coords):
    out = torch.zeros(BATCH, feats.shape[1], *GRID, dtype=feats.dtype)
    for f, (b, z, y, x) in zip(feats, coords.tolist()):
        if 0 <= y < GRID[1] and 0 <= x < GRID[2]:
            out[b, :, z, y, x] += f
    return out


def test_reference_matches_brute_force_loop():
    feats, coords = random_points(300, 5, torch.float64)
    torch.testing.assert_close(bev_pool_reference(feats, coords, BATCH, GRID), brute_force(feats, coords))


def test_reference_gradcheck():
    feats, coords = random_points(60, 3, torch.float64)
    feats.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: bev_pool_reference(f, coords, BATCH, GRID), (feats,))


@pytest.mark.parametrize("channels", [3, 64, 130])  # one block, exactly one block, blocks + tail
def test_triton_matches_reference_values_and_gradients(channels):
    feats, coords = random_points(400, channels, device=TRITON_DEVICE)
    feats.requires_grad_(True)
    ref = bev_pool_reference(feats, coords, BATCH, GRID)
    out = bev_pool_triton(feats, coords, BATCH, GRID)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad(ref, feats, grad)
    (g_out,) = torch.autograd.grad(out, feats, grad)
    torch.testing.assert_close(g_out, g_ref, rtol=0, atol=0)  # a gather: exact


def test_triton_float64_is_exact_and_passes_gradcheck():
    feats, coords = random_points(80, 4, torch.float64, device=TRITON_DEVICE)
    torch.testing.assert_close(bev_pool_triton(feats, coords, BATCH, GRID),
                               bev_pool_reference(feats, coords, BATCH, GRID), rtol=1e-12, atol=1e-12)
    feats.requires_grad_(True)
    # fast mode (random projections): the interpreter is too slow for a full Jacobian
    assert torch.autograd.gradcheck(lambda f: bev_pool_triton(f, coords, BATCH, GRID), (feats,), fast_mode=True)


def test_empty_and_all_outside():
    feats = torch.randn(4, 3)
    coords = torch.tensor([[0, 0, -1, 0], [0, 0, 0, 99], [5, 0, 0, 0], [0, 9, 0, 0]])
    for fn in (bev_pool_reference, bev_pool_triton):
        assert fn(feats, coords, BATCH, GRID).abs().sum() == 0
        assert fn(feats[:0], coords[:0], BATCH, GRID).shape == (BATCH, 3, *GRID)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="coords must be an integer"):
        bev_pool(torch.randn(3, 2), torch.zeros(3, 4), BATCH, GRID)
    with pytest.raises(ValueError, match="feats must be"):
        bev_pool(torch.randn(2, 2), torch.zeros(3, 4, dtype=torch.long), BATCH, GRID)


def test_cpu_dispatch_uses_reference():
    feats, coords = random_points(50, 3)
    assert torch.equal(bev_pool(feats, coords, BATCH, GRID), bev_pool_reference(feats, coords, BATCH, GRID))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_kernel_matches_reference(dtype):
    feats, coords = random_points(20_000, 80, dtype, device="cuda")
    feats.requires_grad_(True)
    out = bev_pool(feats, coords, BATCH, GRID)  # dispatches to Triton on CUDA
    ref = bev_pool_reference(feats.float(), coords, BATCH, GRID)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    grad = torch.randn_like(out)
    (g_out,) = torch.autograd.grad(out, feats, grad)
    (g_ref,) = torch.autograd.grad(ref, feats, grad.float())
    torch.testing.assert_close(g_out.float(), g_ref.float(), rtol=tol, atol=tol)  # both in feats' dtype
    assert torch.equal(out, bev_pool(feats, coords, BATCH, GRID))  # deterministic: no atomics
