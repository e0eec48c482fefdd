import math

import pytest
import torch
from torch.autograd.functional import jacobian

from fewshot_anomaly.models.cflow import CFlow, ConditionalFlow, positional_encoding_2d

TRAIN_STEPS = 12


def textures(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """Oblique stripes with random orientation, phase and pixel noise: a tiny stand-in for a texture category."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = []
    for _ in range(n):
        theta, phase = 0.6 + 0.2 * torch.rand(1, generator=g), 2 * math.pi * torch.rand(1, generator=g)
        stripes = 0.5 + 0.15 * torch.sin(0.5 * (xx * torch.cos(theta) + yy * torch.sin(theta)) + phase)
        gray = (stripes + 0.05 * torch.randn(size, size, generator=g)).clamp(0, 1)
        images.append(torch.stack([0.9 * gray, 0.7 * gray, 0.5 * gray]))
    return torch.stack(images)


def paste_bright_square(images: torch.Tensor, seed: int, side: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = images.clone()
    for image in out:
        y, x = torch.randint(8, images.shape[-1] - side - 8, (2,), generator=g).tolist()
        image[:, y:y + side, x:x + side] = 1.0
    return out


def randomised_flow(dim: int, condition_dim: int = 4, blocks: int = 3) -> ConditionalFlow:
    """A flow far from its near-identity initialisation, so that log-scales, shifts and global affines all matter."""
    flow = ConditionalFlow(dim, condition_dim, blocks, clamp_alpha=1.9)
    with torch.no_grad():
        for block in flow.blocks:
            block.subnet[-1].weight.mul_(20.0)
            block.subnet[-1].bias.normal_(0.0, 5.0)
            block.global_scale.add_(torch.randn(dim))
            block.global_offset.normal_()
    return flow


def test_positional_encoding_hand_case():
    # condition_dim 8: d = 4 per axis, frequencies 1 / 10000^(0/4) = 1 and 1 / 10000^(2/4) = 0.01.
    P = positional_encoding_2d(8, 2, 3)
    assert P.shape == (8, 2, 3)
    for y in range(2):
        for x in range(3):
            expected = [math.sin(x), math.cos(x), math.sin(0.01 * x), math.cos(0.01 * x),
                        math.sin(y), math.cos(y), math.sin(0.01 * y), math.cos(0.01 * y)]
            torch.testing.assert_close(P[:, y, x], torch.tensor(expected), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding_2d(6, 2, 3)


@pytest.mark.parametrize("dim", [5, 6])
def test_flow_is_exactly_invertible(dim):
    torch.manual_seed(0)
    flow = randomised_flow(dim)
    x, c = torch.randn(16, dim), torch.randn(16, 4)
    u, _ = flow(x, c)
    assert (u - x).abs().max() > 0.5  # far from the identity, else the round trip proves nothing
    torch.testing.assert_close(flow.inverse(u, c), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dim", [5, 6])
def test_flow_log_det_equals_brute_force_jacobian(dim):
    torch.manual_seed(1)
    flow = randomised_flow(dim).double()
    x, c = torch.randn(4, dim, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    _, log_det = flow(x, c)
    for i in range(len(x)):
        J = jacobian(lambda v, i=i: flow(v[None], c[i:i + 1])[0][0], x[i])
        expected = torch.linalg.slogdet(J).logabsdet
        assert abs(float(expected)) > 0.1  # a volume-changing map, so the check has teeth
        torch.testing.assert_close(log_det[i], expected, rtol=0, atol=1e-4)


def test_identity_flow_gives_standard_normal_log_likelihood():
    # Zero coupling outputs and the unit global affine leave a pure permutation: log p(x)/C = mean_j log N(x_j; 0, 1).
    torch.manual_seed(2)
    flow = ConditionalFlow(6, 4, 3, clamp_alpha=1.9)
    with torch.no_grad():
        for block in flow.blocks:
            block.subnet[-1].weight.zero_()
            block.subnet[-1].bias.zero_()
    x = torch.randn(10, 6)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).mean(dim=1)
    torch.testing.assert_close(flow.log_likelihood(x, torch.randn(10, 4)), expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    """Lite0 CFLOW trained briefly on 8 stripe textures, then normalised with update()/finalize()."""
    torch.manual_seed(0)
    model = CFlow(fiber_batch_size=256).train()
    train_images = textures(8, seed=0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = model.loss(train_images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        model.update(train_images)
        model.finalize()
    return model, train_images, losses


def test_loss_is_finite_and_decreases(trained):
    _, _, losses = trained
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_encoder_stays_frozen(trained):
    model, _, _ = trained
    model.train()
    assert not model.encoder.training and all(flow.training for flow in model.flows)
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.flows.parameters())
    model.eval()


def test_forward_shapes_at_input_resolution(trained):
    model, _, _ = trained
    with torch.no_grad():
        maps, scores = model(torch.rand(2, 3, 64, 96))
    assert maps.shape == (2, 64, 96) and scores.shape == (2,)
    assert torch.isfinite(maps).all()
    torch.testing.assert_close(scores, maps.flatten(1).amax(dim=1))


def test_update_finalize_store_the_training_maximum(trained):
    model, train_images, _ = trained
    with torch.no_grad():
        expected = torch.stack([ll.amax() for ll in model.log_likelihood_maps(train_images)])
        maps, _ = model(train_images)
    torch.testing.assert_close(model.log_likelihood_max, expected)
    # Every training position has probability <= 1 per scale, so its anomaly value L - sum is >= 0.
    assert maps.min() >= -1e-5
    with pytest.raises(RuntimeError, match="before any update"):
        model.finalize()  # the accumulation was consumed by the fixture's finalize()


def test_scores_do_not_depend_on_the_batch(trained):
    model, _, _ = trained
    a, b = textures(1, seed=3), paste_bright_square(textures(1, seed=4), seed=0)
    with torch.no_grad():
        maps_pair, _ = model(torch.cat([a, b]))
        maps_alone, _ = model(a)
    torch.testing.assert_close(maps_pair[0], maps_alone[0], rtol=0, atol=1e-4)


def test_state_dict_round_trip_reproduces_maps(trained):
    model, _, _ = trained
    images = paste_bright_square(textures(2, seed=7), seed=1)
    torch.manual_seed(123)  # other permutations and weights: must differ until loaded
    fresh = CFlow().eval()
    with torch.no_grad():
        expected, _ = model(images)
        before, _ = fresh(images)
        assert not torch.allclose(before, expected)
        fresh.load_state_dict(model.state_dict())
        after, _ = fresh(images)
    assert torch.equal(after, expected)


def test_pasted_bright_square_scores_higher_than_normal(trained):
    model, _, _ = trained
    normal = textures(6, seed=5)
    anomalous = paste_bright_square(textures(6, seed=6), seed=2)
    with torch.no_grad():
        _, normal_scores = model(normal)
        anomalous_maps, anomalous_scores = model(anomalous)
    assert anomalous_scores.min() > normal_scores.max()
