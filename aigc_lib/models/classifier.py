"""A small MNIST classifier: the book's judge of generated digits.

It does two jobs in later chapters: it reads generated digits back (does a conditional generator
draw the digit we asked for?), and its penultimate features define the book's MNIST-FID
(:mod:`aigc_lib.metrics.image`), as the FID authors recommend for data far from ImageNet.

:func:`mnist_classifier` trains it once (a few seconds on a CPU) and caches it, so every chapter
uses the very same network.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import by_profile, seed_everything

MNIST_SHAPE = (1, 28, 28)


def check_images(x: torch.Tensor, what: str = "images") -> None:
    """Raise a clear error unless ``x`` is a float batch N x 1 x 28 x 28 (values in [0, 1])."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != MNIST_SHAPE:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be MNIST-shaped, N x 1 x 28 x 28 with values in [0, 1], got {got}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{what} must be floats in [0, 1], got dtype {x.dtype}; divide uint8 pixels by 255")


class MNISTClassifier(nn.Module):
    """conv(32) -> pool -> conv(64) -> pool -> 128 features -> 10 logits.

    ``features(x)`` returns the 128-d penultimate activations (after ReLU), used by MNIST-FID.
    ``n_classes`` changes the task: chapter 11's detector of generated digits has 2 (real, generated).
    """

    def __init__(self, n_features: int = 128, dropout: float = 0.3, n_classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 28 -> 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(), nn.Linear(64 * 7 * 7, n_features), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.out = nn.Linear(n_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features phi(x), shape N x n_features."""
        check_images(x)
        return self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape N x n_classes."""
        return self.out(self.dropout(self.features(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """The most likely digit for each image (evaluated in eval mode, in batches)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        preds = [self(xb.to(device)).argmax(1).cpu() for xb in x.split(batch_size)]
        self.train(was_training)
        return torch.cat(preds)


def random_shift(x: torch.Tensor, max_shift: float = 2.0, max_degrees: float = 10.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch: shift each image by up to ``max_shift`` pixels and rotate it a little."""
    n = len(x)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * max_shift / x.shape[-1])
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.enable_grad()  # callable from inside a no_grad block (e.g. a metric that needs a model)
def train_classifier(model: MNISTClassifier, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 8,
                     batch_size: int = 64, lr: float = 2e-3, augment: bool = True, seed: int = 0,
                     progress: bool = True) -> dict:
    """Train with AdamW and cross-entropy (cosine learning-rate decay); returns ``{"loss": [...]}``."""
    check_images(x, "training images")
    k = model.out.out_features
    if y.shape != (len(x),) or y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must be N = {len(x)} ints in 0..{k - 1}, got shape {tuple(y.shape)}")
    gen = seed_everything(seed)
    device = next(model.parameters()).device
    steps = epochs * math.ceil(len(x) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    losses = []
    bar = tqdm(total=steps, desc="MNIST classifier", disable=not progress)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            xb = random_shift(x[idx], generator=gen) if augment else x[idx]
            loss = F.cross_entropy(model(xb.to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return {"loss": losses}


def classifier_config() -> dict:
    """Everything that defines the cached classifier (its cache key)."""
    return {"model": {"n_features": 128, "dropout": 0.3},
            "train": {"epochs": by_profile(quick=8, full=4), "batch_size": 64, "lr": 2e-3,
                      "augment": True, "seed": 0}}


def mnist_classifier(with_history: bool = False):
    """The book's MNIST classifier, trained once on the train split and cached (eval mode).

    Returns the model, or ``(model, history)`` with ``history["test_accuracy"]`` on the test split.
    """
    from aigc_lib.cache import load_or_train
    from aigc_lib.data import load_mnist

    cfg = classifier_config()

    def fit(model):
        history = train_classifier(model, *load_mnist("train"), **cfg["train"])
        x_test, y_test = load_mnist("test")
        history["test_accuracy"] = (model.predict(x_test) == y_test).float().mean().item()
        return history

    model, history = load_or_train("mnist-classifier", cfg, lambda: MNISTClassifier(**cfg["model"]), fit)
    return (model, history) if with_history else model
