"""Toy data: 2-D distributions (the test beds of the GAN, VAE and diffusion chapters) and the
attention chapter's sequence-reversal task."""
from __future__ import annotations

import math

import torch


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the number of points), got {n!r}")


def ring_modes(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The k mode centres of :func:`ring`, shape k x 2, the first at angle 0."""
    angles = torch.arange(k) * (2 * math.pi / k)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def ring(n: int, k: int = 8, radius: float = 2.0, std: float = 0.05,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """n points from an equal mixture of k Gaussians N(mu_j, std^2 I) on a circle."""
    _check_n(n)
    modes = ring_modes(k, radius)
    j = torch.randint(k, (n,), generator=generator)
    return modes[j] + std * torch.randn(n, 2, generator=generator)


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points on two interleaved half circles (as scikit-learn's make_moons), plus noise."""
    _check_n(n)
    upper = torch.rand(n, generator=generator) < 0.5
    t = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper, t.cos(), 1 - t.cos())
    y = torch.where(upper, t.sin(), 0.5 - t.sin())
    return torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=generator)


def spiral(n: int, turns: float = 1.5, noise: float = 0.05,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """n points on an Archimedean spiral r = theta / (2 pi turns), r in [0, 1], plus noise."""
    _check_n(n)
    u = torch.rand(n, generator=generator)
    theta = 2 * math.pi * turns * u.sqrt()  # sqrt: uniform density along the arc, roughly
    r = theta / (2 * math.pi * turns)
    return torch.stack([r * theta.cos(), r * theta.sin()], 1) + noise * torch.randn(n, 2, generator=generator)


def reversal_task(n: int, length: int = 8, n_symbols: int = 10, *,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples of "read a sequence, then write it backwards", for a decoder-only model.

    Each row is ``x_1 .. x_L SEP x_L .. x_1`` (symbols ``0..n_symbols-1``, ``SEP = n_symbols``).
    Returns ``(idx, targets)``: ``idx`` is the row without its last token and ``targets`` the row
    shifted by one, with ``-1`` (ignored by the loss) wherever the next token is part of the input,
    so the model is graded only on the reversed half.
    """
    if length < 1 or n_symbols < 2:
        raise ValueError(f"need length >= 1 and n_symbols >= 2, got {length} and {n_symbols}")
    x = torch.randint(0, n_symbols, (n, length), generator=generator)
    sep = torch.full((n, 1), n_symbols)
    row = torch.cat([x, sep, x.flip(1)], dim=1)
    idx, targets = row[:, :-1], row[:, 1:].clone()
    targets[:, :length] = -1  # predicting x_2..x_L and SEP is not the task
    return idx, targets
