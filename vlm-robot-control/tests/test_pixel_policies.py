"""Pixel policies: FiLM encoders and policy, DrQ shifts, CLIPort's camera geometry, labels, loss and
primitive, and the CLI end to end for configs/pixel_film.yaml and configs/cliport.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vlm_robot_control import cli
from vlm_robot_control.data.datamodule import hindsight_grasp
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.methods import cliport
from vlm_robot_control.methods.cliport import CLIPort, PickPlacePrimitive
from vlm_robot_control.models.cliport import CLIPortNet
from vlm_robot_control.models.film_policy import FiLMPolicy
from vlm_robot_control.models.vision import FiLMGenerator, Lite0Encoder, SmallCNN, film, random_shift

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def images(b: int = 2, size: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# -- encoders and FiLM ----------------------------------------------------------------------------
def test_film_is_a_per_channel_affine_map_and_identity_at_zero():
    x = torch.randn(2, 3, 4, 5)
    gamma, beta = torch.randn(2, 3), torch.randn(2, 3)
    out = film(x, gamma, beta)
    assert torch.allclose(out[1, 2], x[1, 2] * (1 + gamma[1, 2]) + beta[1, 2])
    assert torch.equal(film(x, torch.zeros(2, 3), torch.zeros(2, 3)), x)
    params = FiLMGenerator(384, [3, 5])(torch.randn(2, 384))
    assert [tuple(p.shape) for pair in params for p in pair] == [(2, 3), (2, 3), (2, 5), (2, 5)]


@pytest.mark.parametrize("make, shape", [(SmallCNN, (2, 64, 12, 12)), (lambda: Lite0Encoder(8), (2, 40, 12, 12)),
                                         (lambda: Lite0Encoder(16), (2, 112, 6, 6))])
def test_encoders_map_uint8_images_to_feature_maps_that_film_modulates(make, shape):
    encoder = make().eval()
    x = images()
    plain = encoder(x)
    assert plain.shape == shape and torch.isfinite(plain).all()
    params = [(torch.full((2, c), 0.5), torch.zeros(2, c)) for c in encoder.film_channels]
    assert not torch.allclose(encoder(x, params), plain)


def test_frozen_lite0_keeps_batchnorm_statistics_and_weights_but_passes_gradients_to_film():
    encoder = Lite0Encoder(8, freeze=True).train()
    bn = encoder.backbone._bn0
    before = bn.running_mean.clone()
    gamma = torch.zeros(4, encoder.film_channels[0], requires_grad=True)
    params = [(gamma, torch.zeros(4, c)) for c in encoder.film_channels[:1]] + [
        (torch.zeros(4, c), torch.zeros(4, c)) for c in encoder.film_channels[1:]]
    encoder(images(4), params).square().mean().backward()
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert gamma.grad is not None and gamma.grad.abs().sum() > 0


def test_fine_tuned_lite0_trains_its_weights_with_batchnorm_in_eval_mode():
    encoder = Lite0Encoder(8).train()
    assert encoder.training and not encoder.backbone.training and not encoder.backbone._bn0.training
    assert all(p.requires_grad for p in encoder.parameters())
    assert any(key.startswith("backbone.") for key in encoder.state_dict()), "fine-tuned weights are checkpointed"


@pytest.mark.parametrize("make, prefix", [(lambda: Lite0Encoder(8, freeze=True), "backbone."),
                                          (lambda: CLIPortNet(), "lite0.")])
def test_frozen_lite0_is_left_out_of_the_state_dict_and_reloads_to_identical_outputs(make, prefix):
    torch.manual_seed(0)
    net = make().eval()
    state = net.state_dict()
    assert not any(key.startswith(prefix) for key in state)   # (the frozen encoder alone: nothing left)
    torch.manual_seed(1)   # other random init of what is learned: the load must restore it
    other = make().eval()
    other.load_state_dict(state)
    x = images(2, size=64)
    if isinstance(net, Lite0Encoder):
        torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)
    else:
        lang = torch.randn(2, 384)
        torch.testing.assert_close(other.pick_logits(x, lang), net.pick_logits(x, lang), rtol=0, atol=0)


def test_random_shift_is_a_clamped_translation_per_image():
    torch.manual_seed(0)
    x = torch.arange(4 * 3 * 6 * 7, dtype=torch.int64).view(4, 3, 6, 7).to(torch.uint8)
    out, offsets = random_shift(x, 2)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert offsets.abs().max() <= 2 and len({tuple(o) for o in offsets.tolist()}) > 1
    for b, (dx, dy) in enumerate(offsets.tolist()):
        for r in range(6):
            for c in range(7):
                assert torch.equal(out[b, :, r, c], x[b, :, min(max(r + dy, 0), 5), min(max(c + dx, 0), 6)])


@pytest.mark.parametrize("backbone", ["small_cnn", "lite0"])
def test_film_policy_outputs_a_chunk_that_depends_on_the_instruction_through_film(backbone):
    torch.manual_seed(0)
    policy = FiLMPolicy(backbone=backbone, chunk_size=3).eval()
    x, state = images(1).expand(2, -1, -1, -1), torch.rand(1, 4).expand(2, -1)
    lang = torch.nn.functional.normalize(torch.randn(2, 384), dim=1)
    out = policy(x, state, lang)
    assert out.shape == (2, 3, 4)
    assert torch.equal(out[0], out[1]), "FiLM starts as the identity: the instruction does not matter yet"
    torch.nn.init.normal_(policy.film.linear.weight, std=0.5)
    out = policy(x, state, lang)
    assert (out[0] - out[1]).abs().max() > 1e-3, "different instructions must give different actions"


def test_film_policy_average_pooling_and_bad_names():
    assert FiLMPolicy(pooling="average")(images(), torch.rand(2, 4), torch.randn(2, 384)).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="backbone"):
        FiLMPolicy(backbone="resnet")


# -- CLIPort ----------------------------------------------------------------------------------------
def test_pixel_table_round_trip_and_axes():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.2, 0.2, size=(2, 50))
    for z in (0.0, cliport.PICK_Z):
        u, v = cliport.table_to_pixel(x, y, z)
        assert np.allclose(cliport.pixel_to_table(u, v, z), (x, y), atol=1e-12)
    assert cliport.table_to_pixel(0.0, 0.0) == (47.5, 47.5)
    (u0, v0), (u1, v1) = cliport.table_to_pixel(0.0, 0.0), cliport.table_to_pixel(0.05, 0.05)
    assert u1 > u0 and v1 < v0, "column 0 is -x, row 0 is +y"
    # 96 px cover 2 * 0.62 * tan(20 deg) = 0.451 m of table
    assert np.isclose(cliport.table_to_pixel(0.451 / 2, 0.0)[0] + 0.5, 96, atol=0.1)


def test_projection_lands_on_the_rendered_red_block():
    env = TabletopEnv(observation_image=True)
    for seed in range(50):   # a scene whose only red object is a block, away from the gripper
        obs, _ = env.reset(seed=seed)
        red = [n for n, (_, colour) in enumerate(env.task.objects) if colour == "red"]
        if red and env.task.objects[red[0]][0] == "block" and len(red) == 1:
            block = env.block_positions()[red[0]]
            if np.linalg.norm(block[:2] - env.hand_position()[:2]) > 0.08:
                break
    else:
        pytest.fail("no seed with a lone red block")
    image = obs["image"].astype(int)
    red_pixels = (image[..., 0] > 150) & (image[..., 1] < 90) & (image[..., 2] < 90)
    rows, cols = np.nonzero(red_pixels)
    assert 15 < len(rows) < 60, f"expected one block of red pixels, found {len(rows)}"
    u, v = cliport.table_to_pixel(block[0], block[1], cliport.PICK_Z)
    assert abs(cols.mean() - u) < 0.8 and abs(rows.mean() - v) < 0.8, (cols.mean(), rows.mean(), u, v)
    env.close()


def test_episode_rows_take_one_row_per_episode_with_its_first_image_and_grasp_labels():
    # episode 3: open, open, close (pick at hand [0.1, 0.2]), close, open (place at [-0.1, 0.05]), close, open
    # episode 7: close at its first frame, open at its last
    episode = np.array([3] * 7 + [7] * 3)
    close = np.array([-1, -1, 1, 1, -1, 1, -1, 1, 1, -1], dtype=np.float32)
    action = np.zeros((10, 4), np.float32)
    action[:, 3] = close
    state = np.zeros((10, 4), np.float32)
    state[:, :2] = np.arange(40, 60).reshape(10, 2) / 1000
    grasp, release = hindsight_grasp(state, action, episode)
    assert np.allclose(grasp, state[[2] * 7 + [7] * 3, :2]) and np.allclose(release, state[[4] * 7 + [9] * 3, :2])
    first_image = torch.arange(10, dtype=torch.uint8)[:, None, None, None].expand(10, 3, 8, 8)
    batch = {"episode_index": torch.as_tensor(episode), "grasp_xy": torch.as_tensor(grasp),
             "release_xy": torch.as_tensor(release), "lang": torch.arange(10.0)[:, None],
             "first_image": torch.where(torch.as_tensor(episode == 3)[:, None, None, None], 0, 7) + 0 * first_image}
    rows = cliport.episode_rows({key: value[[8, 1, 5, 9]] for key, value in batch.items()})   # episodes 7, 3
    assert rows["lang"].flatten().tolist() == [1.0, 8.0], "one row per episode, in episode order"
    assert rows["image"][:, 0, 0, 0].tolist() == [0, 7]
    expected = cliport.to_pixel(state[[2, 7], :2], cliport.PICK_Z, 8)
    assert rows["pick"].tolist() == expected.tolist()
    assert rows["place"].tolist() == cliport.to_pixel(state[[4, 9], :2], cliport.PLACE_Z, 8).tolist()
    action[7:, 3] = -1   # episode 7 never closes
    batch["grasp_xy"], batch["release_xy"] = map(torch.as_tensor, hindsight_grasp(state, action, episode))
    assert torch.isnan(batch["grasp_xy"][7:]).all() and not torch.isnan(batch["grasp_xy"][:7]).any()
    with pytest.raises(ValueError, match="episode 7"):
        cliport.episode_rows(batch)


def test_heatmap_cross_entropy_indexes_pixels_as_u_v():
    logits = torch.zeros(1, 6, 8)
    logits[0, 2, 5] = 20.0   # row 2, column 5
    assert cliport.heatmap_cross_entropy(logits, torch.tensor([[5, 2]])) < 1e-3
    assert cliport.heatmap_cross_entropy(logits, torch.tensor([[2, 5]])) > 10


def test_cliport_heatmap_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    module = CLIPort(CLIPortNet(), shift=0).train()
    x, lang = images(2, size=64), torch.nn.functional.normalize(torch.randn(2, 384), dim=1)
    pick, place = torch.tensor([[10, 20], [50, 40]]), torch.tensor([[40, 10], [15, 55]])
    optimiser = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss = module.episode_loss(x, lang, pick, place)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.isclose(losses[0], 2 * np.log(64 * 64), rtol=0.1), "two near-uniform softmaxes over 64 x 64 pixels"
    assert losses[-1] < 0.7 * losses[0], losses


def test_pick_place_primitive_at_the_true_positions_solves_the_task():
    env = TabletopEnv("pick_place")
    env.reset(seed=3)
    (block, target), = env.task.goals
    n_blocks = len(env.block_positions())
    primitive = PickPlacePrimitive(env.block_positions()[block][:2], env.target_positions()[target - n_blocks][:2])
    success = False
    while not primitive.done and not success:
        _, _, success, truncated, _ = env.step(primitive.act(env.hand_position()))
        assert not truncated
    assert success and env.steps < 100
    env.close()


# -- end to end ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny recording (and embedding cache) shared by both configs."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("config", ["pixel_film", "cliport"])
def test_cli_fit_then_test(config, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "vlm-robot-control", "fit", f"--config={CONFIGS / f'{config}.yaml'}", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1", "--data.init_args.train_episodes=2", "--data.init_args.val_episodes=1",
        "--data.init_args.eval_episodes=1", "--data.init_args.eval_batch=1", "--data.init_args.eval_splits=[seen]",
        "--model.init_args.log_videos=1", f"--data.init_args.cache_dir={cache_dir}", "--test_after_fit=true"])
    cli.main()
    run = tmp_path / "runs" / "vlm-robot-control" / config / "version_0"
    record = json.loads((run / "metrics.json").read_text())
    assert record["stage"] == "test" and 0.0 <= record["metrics"]["test/success_rate_seen"] <= 1.0
    assert record["metrics"]["test/episodes"] == 1.0
    assert (run / "checkpoints" / "last.ckpt").is_file()
