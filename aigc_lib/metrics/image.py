"""Frechet distance between image sets, in the feature space of the book's MNIST classifier.

FID (Heusel et al., 2017) fits a Gaussian to the features of each set and measures

    FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

Papers compute it with Inception-v3 features of ImageNet-like photos. For digits the book uses the
128-d penultimate features of an MNIST classifier instead (the FID authors recommend a
domain-specific network for data far from ImageNet). MNIST-FID numbers are therefore on their own
scale: never compare them with Inception FIDs from papers.

A metric takes what it measures with: every function here that needs features or predictions
takes the ``classifier`` (anything with ``features(x)`` and ``predict(x)``, such as
:class:`aigc_lib.models.classifier.MNISTClassifier`). The book passes its own trained one,
``zoo.mnist_classifier()[0]``, so this module depends on no recipe.

:func:`detection_accuracy` scores a detector of generated images (the responsible-AIGC chapter).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from aigc_lib.config import model_device
from aigc_lib.models.classifier import check_images


def _as_2d(f, what: str) -> np.ndarray:
    f = f.detach().cpu().double().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"{what} must be an N x d array of features with N >= 2, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return f


def fid_from_features(f_a, f_b) -> float:
    """The squared Frechet distance between Gaussians fitted to two feature sets (N_a x d and
    N_b x d): ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, which is what FID means
    (the distance itself would be its square root)."""
    f_a, f_b = _as_2d(f_a, "f_a"), _as_2d(f_b, "f_b")
    if f_a.shape[1] != f_b.shape[1]:
        raise ValueError(f"feature sizes differ: {f_a.shape[1]} vs {f_b.shape[1]}")
    mu_a, mu_b = f_a.mean(0), f_b.mean(0)
    S_a, S_b = np.atleast_2d(np.cov(f_a, rowvar=False)), np.atleast_2d(np.cov(f_b, rowvar=False))
    # Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b, which are
    # real and >= 0 (S_a S_b is similar to S_a^(1/2) S_b S_a^(1/2)); clip round-off below zero.
    eig = np.linalg.eigvals(S_a @ S_b).real.clip(min=0)
    fid = ((mu_a - mu_b) ** 2).sum() + np.trace(S_a) + np.trace(S_b) - 2 * np.sqrt(eig).sum()
    return float(max(fid, 0.0))


def mnist_features(x: torch.Tensor, classifier, batch_size: int = 500) -> torch.Tensor:
    """``classifier.features`` of images N x 1 x 28 x 28 in [0, 1], in batches."""
    check_images(x)
    _check_classifier(classifier)
    device = model_device(classifier)
    with torch.no_grad():
        return torch.cat([classifier.features(xb.to(device)).cpu() for xb in x.split(batch_size)])


def _check_classifier(classifier) -> None:
    if not (callable(getattr(classifier, "features", None)) and callable(getattr(classifier, "predict", None))):
        raise TypeError(f"give the classifier to measure with (features() and predict(), e.g. "
                        f"zoo.mnist_classifier()[0]), got {type(classifier).__name__}")


def mnist_fid(x_a: torch.Tensor, x_b: torch.Tensor, classifier) -> float:
    """MNIST-FID between two image sets (each N x 1 x 28 x 28 in [0, 1]) in the features of
    ``classifier``; lower is closer.

    Use the same set sizes when comparing numbers: FID is biased upwards for small sets.
    """
    check_images(x_a, "x_a"), check_images(x_b, "x_b")
    return fid_from_features(mnist_features(x_a, classifier), mnist_features(x_b, classifier))


def class_accuracy(x: torch.Tensor, y: torch.Tensor, classifier) -> float:
    """Share of images ``x`` (N x 1 x 28 x 28 in [0, 1]) that ``classifier`` reads as ``y``."""
    check_images(x)
    y = torch.as_tensor(y)
    if y.shape != (len(x),):
        raise ValueError(f"give one label per image ({len(x)}), got shape {tuple(y.shape)}")
    _check_classifier(classifier)
    return (classifier.predict(x).cpu() == y.cpu()).float().mean().item()


def class_diversity(x: torch.Tensor, y: torch.Tensor, classifier) -> float:
    """How varied the images of each class are: sqrt(Tr Cov) of their classifier features, averaged
    over the classes present (each needs at least 2 images). Compare with real digits' value."""
    check_images(x)
    y = torch.as_tensor(y).cpu()
    if y.shape != (len(x),):
        raise ValueError(f"give one label per image ({len(x)}), got shape {tuple(y.shape)}")
    f = mnist_features(x, classifier).double()
    spreads = [f[y == c].var(0).sum().sqrt() for c in y.unique() if (y == c).sum() >= 2]
    if not spreads:
        raise ValueError("need at least two images of some class")
    return torch.stack(spreads).mean().item()


def sample_scores(sample: Callable[[], torch.Tensor], x_ref: torch.Tensor, classifier,
                  labels: torch.Tensor | None = None, keep: int = 40) -> dict:
    """Score a generator the way the diffusion chapter compares them: draw images with
    ``sample()`` (timed), then

    ``{"seconds_per_image", "fid"}`` (MNIST-FID against ``x_ref``), ``"images"`` (the first
    ``keep``), and, given the ``labels`` that were asked for, ``"accuracy"`` (:func:`class_accuracy`)
    and ``"diversity"`` (:func:`class_diversity`).
    """
    start = time.perf_counter()
    x = sample()
    seconds = time.perf_counter() - start
    check_images(x, "sample()")
    out = {"seconds_per_image": seconds / len(x), "fid": mnist_fid(x, x_ref, classifier),
           "images": x[:keep].clone()}
    if labels is not None:
        out.update(accuracy=class_accuracy(x, labels, classifier),
                   diversity=class_diversity(x, labels, classifier))
    return out


@torch.no_grad()
def detection_accuracy(detector, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """Share of ``real`` called real, of ``fake`` called generated, and their mean (balanced accuracy)."""
    if len(real) == 0 or len(fake) == 0:
        raise ValueError("need at least one real and one generated image")
    real_ok = (detector.predict(real) == 0).float().mean().item()
    fake_ok = (detector.predict(fake) == 1).float().mean().item()
    return {"real": real_ok, "fake": fake_ok, "balanced": (real_ok + fake_ok) / 2}
