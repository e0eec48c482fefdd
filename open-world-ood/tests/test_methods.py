"""The open-set methods' pieces, each against a value worked out independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from open_world_ood.models.conformal import Conformal
from open_world_ood.models.detector import OpenWorldCenterNet
from open_world_ood.models.open_set import MSP, ClassQueues, ClosedSet, Energy, Mahalanobis
from open_world_ood.models.ore import ORE, weibull_fit, weibull_logpdf
from open_world_ood.models.prob import PROB
from open_world_ood.models.randbox import RandBox
from open_world_ood.models.vos import VOS


def _candidates(logits, embedding=None, objectness=None):
    logits = torch.as_tensor(logits, dtype=torch.float32)
    n = len(logits)
    return {"logits": logits, "objectness": torch.ones(n) if objectness is None else torch.as_tensor(objectness),
            "embedding": torch.zeros(n, 2) if embedding is None else torch.as_tensor(embedding, dtype=torch.float32),
            "boxes": torch.zeros(n, 4)}


def test_post_hoc_scores_match_their_formulas():
    logits = [[2.0, 0.0], [0.1, 0.0]]
    msp, energy = MSP(), Energy()
    for method in (msp, energy):
        method.setup(2, 2)
    softmax = torch.tensor(logits).softmax(1).amax(1)
    assert torch.allclose(msp.unknown_score(_candidates(logits)), -softmax)
    expected = -torch.tensor([math.log(math.exp(2) + 1), math.log(math.exp(0.1) + 1)])
    assert torch.allclose(energy.unknown_score(_candidates(logits)), expected)
    # the flatter logits are the more unknown under both scores
    assert msp.unknown_score(_candidates(logits))[1] > msp.unknown_score(_candidates(logits))[0]


def test_calibrate_keeps_the_tpr_fraction_known():
    method = Energy(tpr=0.9)
    method.setup(2, 2)
    method.calibrate(torch.arange(100.0), torch.zeros(100, dtype=torch.long))
    assert float(method.threshold) == pytest.approx(89.1)  # the 0.9 quantile, linear interpolation
    closed = ClosedSet()
    closed.setup(2, 2)
    labels, _ = closed.decide(_candidates([[5.0, -5.0], [-5.0, -5.0]]))
    assert labels.tolist() == [0, 0]  # closed set: never unknown


def test_mahalanobis_against_numpy():
    torch.manual_seed(0)
    method = Mahalanobis(queue_size=50)
    method.setup(2, 3)
    a, b = torch.randn(50, 3) + 3, torch.randn(50, 3) - 3
    method.observe(torch.cat([a, b]), torch.zeros(100, 2), torch.cat([torch.zeros(50), torch.ones(50)]).long())
    method.fit()
    centred = np.concatenate([a.numpy() - a.numpy().mean(0), b.numpy() - b.numpy().mean(0)])
    precision = np.linalg.inv(centred.T @ centred / 100 + 1e-4 * np.eye(3))
    x = np.array([[0.5, -1.0, 2.0]])
    expected = min(((x - m) @ precision @ (x - m).T).item() for m in (a.numpy().mean(0), b.numpy().mean(0)))
    score = method.unknown_score(_candidates([[0.0, 0.0]], embedding=x))
    assert float(score) == pytest.approx(expected, rel=1e-4)


def test_queues_keep_the_latest_and_skip_non_known_labels():
    queues = ClassQueues(2, 1, size=3)
    queues.push(torch.arange(5.0)[:, None], torch.tensor([0, 0, 0, 0, 2]))  # label 2: ORE's pseudo unknown
    assert queues.queue[0, :, 0].tolist() == [1.0, 2.0, 3.0] and queues.count.tolist() == [4, 0]


def test_conformal_threshold_is_the_split_conformal_rank():
    method = Conformal(alpha=0.1)
    method.setup(2, 2)
    scores = torch.arange(1.0, 20.0)  # 19 calibration scores of class 0: rank ceil(20 * 0.9) = 18 -> 18.0
    method.calibrate(scores, torch.zeros(19, dtype=torch.long))
    assert float(method.thresholds[0]) == 18.0 and math.isinf(float(method.thresholds[1]))
    # the guarantee on exchangeable scores: P(score > threshold) <= alpha, checked by simulation
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(400):
        sample = torch.from_numpy(rng.normal(size=30))
        method.calibrate(sample[:29], torch.zeros(29, dtype=torch.long))
        rates.append(float(sample[29] > method.thresholds[0]))
    assert np.mean(rates) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 400)


def test_weibull_fit_recovers_known_parameters():
    rng = np.random.default_rng(0)
    x = 2.0 * rng.weibull(1.5, size=20000) + 5.0
    k, scale, shift = weibull_fit(x)
    assert k == pytest.approx(1.5, rel=0.05) and scale == pytest.approx(2.0, rel=0.05)
    assert shift == pytest.approx(5.0, abs=0.05)
    density = weibull_logpdf(torch.tensor([6.0]), 1.5, 2.0, 5.0).exp()
    assert float(density) == pytest.approx(1.5 / 2 * 0.5 ** 0.5 * math.exp(-(0.5 ** 1.5)), rel=1e-5)


def _detector(unknown_channel=False):
    torch.manual_seed(0)
    return OpenWorldCenterNet(2, unknown_channel, weights=None, head_channels=16)


def test_detector_outputs_candidates_and_classifier_matches_the_head():
    detector = _detector().eval()
    outputs = detector(torch.rand(2, 3, 64, 64))
    assert outputs["heatmap"].shape == (2, 2, 16, 16) and outputs["embedding"].shape == (2, 16, 16, 16)
    direct = detector.classifier(outputs["embedding"].permute(0, 2, 3, 1))
    assert torch.allclose(direct.permute(0, 3, 1, 2), outputs["heatmap"], atol=1e-5)
    candidates = detector.candidates(outputs, k=5, min_objectness=0.0)
    assert [len(c["boxes"]) for c in candidates] == [5, 5]
    assert (candidates[0]["objectness"][:-1] >= candidates[0]["objectness"][1:]).all()


def test_ore_pseudo_labels_lie_outside_the_labelled_boxes():
    detector = _detector(unknown_channel=True).eval()
    detector.wh[-1].bias.data.fill_(4.0)  # 16-pixel boxes from the untrained size head
    method = ORE(k=2)
    method.setup(2, 16)
    outputs = detector(torch.rand(1, 3, 64, 64))
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 32.0, 32.0]]), "labels": torch.tensor([1])}]
    [augmented] = method.training_targets(outputs, targets)
    pseudo = augmented["boxes"][1:]
    assert len(pseudo) == 2 and augmented["labels"][1:].tolist() == [2, 2]
    centres = (pseudo[:, :2] + pseudo[:, 2:]) / 2
    assert not ((centres >= 0) & (centres <= 32)).all(1).any()


def test_vos_loss_waits_for_full_queues_then_trains():
    detector = _detector()
    method = VOS(queue_size=4, samples=50, start=0.5)
    method.setup(2, 16)
    embedding, labels = torch.randn(8, 16), torch.tensor([0, 1] * 4)
    assert method.training_loss({}, embedding, labels, detector.classifier, progress=0.9) == {}  # empty queues
    method.observe(embedding, torch.zeros(8, 2), labels)
    assert method.training_loss({}, embedding, labels, detector.classifier, progress=0.1) == {}  # too early
    loss = method.training_loss({}, embedding.requires_grad_(), labels, detector.classifier, progress=0.9)
    loss["uncertainty"].backward()
    assert loss["uncertainty"] > 0 and method.weight_energy.grad is not None


def test_prob_scores_and_labels():
    method = PROB()
    method.setup(2, 2)
    method.eval()
    candidates = _candidates([[3.0, -3.0, -3.0], [-3.0, -3.0, 3.0]], embedding=[[0.0, 0.0], [0.0, 0.0]])
    labels, scores = method.decide(candidates)
    assert labels.tolist() == [0, -1]  # the unknown channel wins on the second
    assert float(scores[0]) == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), rel=1e-4)  # p(o) = 1 at the mean


def test_randbox_negatives_count():
    method = RandBox(num_proposals=10)
    mask = method.negatives({"objectness": torch.zeros(3, 1, 8, 8)})
    assert mask.shape == (3, 1, 8, 8) and mask.sum((1, 2, 3)).tolist() == [10.0, 10.0, 10.0]


@pytest.mark.parametrize("make", [ClosedSet, MSP, Energy, lambda: Mahalanobis(queue_size=8), lambda: VOS(queue_size=8),
                                  lambda: ORE(history=16), PROB, RandBox, lambda: Conformal(queue_size=8)])
def test_a_trained_method_loads_into_a_fresh_one(make):
    """Every statistic is a fixed-shape buffer: a checkpoint of a trained method loads into a new one."""
    from open_world_ood.methods.module import OpenWorldModule

    kwargs = {"known_classes": ["a", "b"], "weights": None, "head_channels": 16}
    trained = OpenWorldModule(make(), **kwargs)
    trained.method.observe(torch.randn(40, 16), torch.randn(40, 3), torch.tensor([0, 1, 2, 0] * 10) % 3)
    trained.method.fit()
    fresh = OpenWorldModule(make(), **kwargs)
    fresh.load_state_dict(trained.state_dict())
    for name, value in trained.method.state_dict().items():
        assert torch.equal(value, fresh.method.state_dict()[name]) or torch.isnan(value).all()


def test_discovery_silhouette_purity_and_clusters():
    from open_world_ood.discovery import discover, purity, silhouette

    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    distances = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    brute = []
    for i in range(30):
        own = labels == labels[i]
        a = distances[i, own].sum() / (own.sum() - 1)
        b = min(distances[i, labels == c].mean() for c in set(labels.tolist()) - {labels[i]})
        brute.append((b - a) / max(a, b))
    assert silhouette(x, labels) == pytest.approx(np.mean(brute))
    assert purity(np.array([0, 0, 0, 1, 1]), ["a", "a", "b", "c", "c"]) == pytest.approx(0.8)
    blobs = np.concatenate([rng.normal(0, 0.05, (40, 6)) + np.eye(6)[i] for i in range(3)])
    found = discover(blobs)
    assert len(set(found.tolist())) == 3 and purity(found, [c for c in "abc" for _ in range(40)]) == 1.0
