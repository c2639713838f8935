"""Three small supervised trainings on :func:`~aigc_lib.training.loop.train_steps`.

* :func:`train_classifier`: cross-entropy on labelled images (the MNIST classifier, the responsible-AIGC chapter's
  detectors of generated digits), with random shifts and rotations as augmentation;
* :func:`train_sequence_task`: a decoder-only model on a toy task drawn fresh at every step
  (the attention chapter's reversal task);
* :func:`train_next_token`: next-token cross-entropy on whole sequences (the applications chapter's melodies).
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.config import generator as seeded_generator
from aigc_lib.config import model_device, pinned_threads, seed_everything
from aigc_lib.models.classifier import check_images
from aigc_lib.training.loop import train_steps


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


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 8,
                     batch_size: int = 64, lr: float = 2e-3, augment: bool = True, seed: int = 0,
                     progress: bool = True) -> dict:
    """AdamW and cross-entropy with one-cycle learning-rate decay; returns ``{"loss": [...]}``."""
    check_images(x, "training images")
    k = model.out.out_features
    if y.shape != (len(x),) or y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must be N = {len(x)} ints in 0..{k - 1}, got shape {tuple(y.shape)}")
    g = seed_everything(seed)
    device = model_device(model)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                xb = random_shift(x[idx], generator=g) if augment else x[idx]
                yield xb.to(device), y[idx].to(device)

    steps = epochs * math.ceil(len(x) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    return train_steps(model, batches(), lambda m, b: F.cross_entropy(m(b[0]), b[1]), steps=steps,
                       optimizer=optimizer, desc="MNIST classifier", progress=progress,
                       scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps))


def train_sequence_task(model: nn.Module, data: Callable, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
                        generator: torch.Generator | None = None, progress: bool = True) -> dict:
    """AdamW on ``model(idx, targets) -> (logits, loss)`` with fresh batches from ``data(n, generator)``.

    Returns ``{"loss": [...]}``, one value per step; the learning rate decays linearly to zero.
    """
    def batches():
        while True:
            yield data(batch_size, generator)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # toy-sized ops: syncing CPU threads costs more than it saves
    with pinned_threads(0 if torch.cuda.is_available() else 1):
        return train_steps(model, batches(), lambda m, b: m(*b)[1], steps=steps, optimizer=optimizer,
                           scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps),
                           grad_clip=1.0, progress=progress)


def train_next_token(model: nn.Module, tokens: torch.Tensor, *, steps: int, batch_size: int = 64,
                     lr: float = 3e-3, seed: int = 0, progress: bool = True, desc: str = "next token") -> dict:
    """Next-token cross-entropy on whole sequences: inputs ``tokens[:, :-1]``, targets ``tokens[:, 1:]``.

    ``tokens`` is N x T (e.g. rows [BOS, notes...], so position t of every row is note t of its
    melody). Random rows each step, AdamW with cosine decay to lr / 10; returns ``{"loss": [...]}``.
    """
    if tokens.dim() != 2 or tokens.size(1) < 2:
        raise ValueError(f"tokens must be N x T token ids with T >= 2, got shape {tuple(tokens.shape)}")
    g = seeded_generator(seed)
    device = model_device(model)

    def batches():
        while True:
            yield tokens[torch.randint(len(tokens), (batch_size,), generator=g)].to(device)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    return train_steps(model, batches(), lambda m, b: m(b[:, :-1], b[:, 1:])[1], steps=steps, optimizer=optimizer,
                       scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 10),
                       grad_clip=1.0, desc=desc, progress=progress)
