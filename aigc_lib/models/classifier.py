"""A small MNIST classifier: the book's judge of generated digits.

It does two jobs in later chapters: it reads generated digits back (does a conditional generator
draw the digit we asked for?), and its penultimate features define the book's MNIST-FID
(:mod:`aigc_lib.metrics.image`), as the FID authors recommend for data far from ImageNet.

:func:`aigc_lib.zoo.mnist_classifier` trains it once (a few seconds on a CPU) and caches it, so
every chapter uses the very same network; :func:`aigc_lib.training.supervised.train_classifier`
is its training loop.
"""
from __future__ import annotations

import torch
from torch import nn

from aigc_lib.config import model_device

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
    ``n_classes`` changes the task: the responsible-AIGC chapter's detector of generated digits has 2
    (real, generated).
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
        device = model_device(self)
        preds = [self(xb.to(device)).argmax(1).cpu() for xb in x.split(batch_size)]
        self.train(was_training)
        return torch.cat(preds)
