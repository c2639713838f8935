"""MNIST-FID, ring and sequence metrics: closed forms, invariances and clear errors."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from aigc_lib import zoo
from aigc_lib.data import load_mnist, ring, ring_modes
from aigc_lib.metrics.image import (class_accuracy, class_diversity, fid_from_features, mnist_fid,
                                    sample_scores)
from aigc_lib.metrics.toy import ring_metrics, sequence_accuracy


def test_fid_of_a_set_with_itself_is_zero():
    f = torch.randn(500, 16)
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)


def test_fid_equal_covariances_is_squared_mean_distance():
    """Shifting every feature by delta keeps the covariance: FID = ||delta||^2 exactly."""
    f = torch.randn(400, 8, dtype=torch.float64) @ torch.randn(8, 8, dtype=torch.float64)
    delta = torch.arange(8, dtype=torch.float64) / 4
    assert fid_from_features(f, f + delta) == pytest.approx((delta ** 2).sum().item(), rel=1e-6)


def test_fid_trace_term_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    f_a, f_b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(200, 6)) + 1
    S_a, S_b = np.cov(f_a, rowvar=False), np.cov(f_b, rowvar=False)
    expected = (((f_a.mean(0) - f_b.mean(0)) ** 2).sum()
                + np.trace(S_a + S_b - 2 * scipy.linalg.sqrtm(S_a @ S_b).real))
    assert fid_from_features(f_a, f_b) == pytest.approx(expected, rel=1e-6)


def test_fid_gaussians_closed_form_in_1d():
    """1-D: FID = (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200_000, 1, generator=g), 3 + 2 * torch.randn(200_000, 1, generator=g)
    assert fid_from_features(a, b) == pytest.approx(9 + 1, rel=0.02)


def test_fid_bad_input():
    with pytest.raises(ValueError, match="feature sizes"):
        fid_from_features(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="N >= 2"):
        fid_from_features(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        fid_from_features(torch.full((5, 3), float("nan")), torch.randn(5, 3))
    with pytest.raises(ValueError, match="N x 1 x 28 x 28"):
        mnist_fid(torch.rand(10, 28, 28), torch.rand(10, 1, 28, 28), object())
    with pytest.raises(TypeError, match="classifier to measure with"):
        mnist_fid(torch.rand(10, 1, 28, 28), torch.rand(10, 1, 28, 28), object())


def test_ring_metrics_on_real_samples():
    x = ring(8000, generator=torch.Generator().manual_seed(0))
    m = ring_metrics(x)
    assert m["modes_covered"] == 8
    assert m["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # 2-D: P(r < 3 sigma)
    assert sum(m["counts"]) == round(m["high_quality"] * 8000)


def test_ring_metrics_detects_collapse_and_junk():
    one_mode = ring_modes()[3] + 0.01 * torch.randn(500, 2)
    m = ring_metrics(one_mode)
    assert m["modes_covered"] == 1 and m["high_quality"] == 1.0 and m["counts"][3] == 500
    assert ring_metrics(torch.zeros(100, 2)) == {"modes_covered": 0, "high_quality": 0.0, "counts": [0] * 8}


def test_ring_metrics_bad_input():
    with pytest.raises(ValueError, match="N x 2"):
        ring_metrics(torch.zeros(10, 3))
    with pytest.raises(ValueError, match="std > 0"):
        ring_metrics(torch.zeros(10, 2), std=0)


@pytest.mark.slow
def test_mnist_fid_floor_is_small_and_noise_is_far():
    x_train, _ = load_mnist("train")
    x_test, _ = load_mnist("test")
    judge = zoo.mnist_classifier(progress=False)[0]
    assert mnist_fid(x_test, x_test, judge) == pytest.approx(0.0, abs=1e-3)
    subset = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:1000]
    floor = mnist_fid(x_train[subset], x_test, judge)  # a random subset: the split is sorted by class
    noise = mnist_fid(torch.rand(1000, 1, 28, 28), x_test, judge)
    assert floor < 0.05 * noise


def test_class_accuracy_diversity_and_sample_scores():
    x_test, y_test = load_mnist("test")
    judge = zoo.mnist_classifier(progress=False)[0]
    assert class_accuracy(x_test, y_test, judge) > 0.95             # the classifier reads real digits
    assert class_accuracy(x_test, (y_test + 1) % 10, judge) < 0.05   # ... and not as some other digit
    one_per_class = torch.stack([x_test[y_test == c][0] for c in range(10)])
    copies = one_per_class.repeat_interleave(20, 0)            # 20 identical images per class
    labels = torch.arange(10).repeat_interleave(20)
    assert class_diversity(copies, labels, judge) == pytest.approx(0.0, abs=1e-6)
    assert class_diversity(x_test, y_test, judge) > 1.0
    out = sample_scores(lambda: x_test[:200], x_test, judge, y_test[:200], keep=5)
    assert out["accuracy"] > 0.9 and out["fid"] > 0 and out["images"].shape == (5, 1, 28, 28)
    assert out["seconds_per_image"] >= 0 and set(out) == {"seconds_per_image", "fid", "images", "accuracy", "diversity"}
    with pytest.raises(ValueError, match="one label per image"):
        class_accuracy(x_test[:5], y_test[:4], judge)
    with pytest.raises(ValueError, match="two images"):
        class_diversity(x_test[:3], torch.tensor([0, 1, 2]), judge)


class Answers(torch.nn.Module):
    """A 'model' whose logits put all the mass on fixed answers: forward(idx) -> (logits, None)."""

    def __init__(self, answers, vocab=5):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.as_tensor(answers), vocab).float()

    def forward(self, idx):
        return self.logits[: len(idx)], None


def test_sequence_accuracy_grades_only_the_targets():
    targets = torch.tensor([[-1, -1, 1, 2], [-1, -1, 3, 4], [-1, -1, 0, 0]])
    answers = torch.tensor([[4, 4, 1, 2], [0, 0, 3, 0], [1, 1, 2, 2]])  # right, half right, wrong
    token_acc, seq_acc = sequence_accuracy(Answers(answers), torch.zeros(3, 4, dtype=torch.long), targets)
    assert token_acc == pytest.approx(3 / 6) and seq_acc == pytest.approx(1 / 3)
