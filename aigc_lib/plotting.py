"""Plot helpers shared by the chapters: labelled image grids and loss curves."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _to_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.float32)
    if x.ndim == 3:  # N x H x W
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x H x W or N x C x H x W with C in (1, 3), got shape {tuple(x.shape)}")
    return x


def image_grid(images, nrow: int = 8, *, titles: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, title: str | None = None,
               scale: float = 1.0, vmin: float = 0.0, vmax: float = 1.0):
    """Show N images (values in [vmin, vmax]) in rows of ``nrow``; returns the figure.

    ``titles`` labels each image, ``row_labels`` each row (left margin), ``title`` the figure.
    """
    x = _to_numpy_images(images)
    n = len(x)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"got {len(row_labels)} row labels for {nrows} rows")
    fig, axes = plt.subplots(nrows, ncol, figsize=(scale * 1.1 * ncol, scale * 1.2 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i >= n:
            ax.axis("off")
            continue
        img = x[i].transpose(1, 2, 0)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img.clip(vmin, vmax), cmap="gray", vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(histories: Mapping[str, Sequence[float]], *, title: str = "Training loss",
                xlabel: str = "step", ylabel: str = "loss", smooth: int = 1, ax=None, logy: bool = False):
    """Plot one or more loss curves, optionally smoothed by a moving average of ``smooth`` points."""
    if not histories:
        raise ValueError("loss_curves needs at least one named curve")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in histories.items():
        y = np.asarray(values, dtype=float)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(len(y)) + (smooth - 1 if smooth > 1 else 0), y, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def scatter_2d(points: Mapping[str, torch.Tensor | np.ndarray], *, title: str = "", ax=None,
               lim: float | None = None, s: float = 2.0):
    """Scatter one or more named 2-D point clouds (N x 2) on the same axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    for name, p in points.items():
        p = p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"{name!r}: points must have shape N x 2, got {p.shape}")
        ax.scatter(p[:, 0], p[:, 1], s=s, alpha=0.6, label=name)
    if lim is not None:
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$")
    if len(points) > 1:
        ax.legend(markerscale=4)
    return ax


def timeline(events: Sequence[tuple[float, str, str]], *, title: str = "", ax=None):
    """Plot dated events ``(year, label, family)``: one row per event, coloured by family.

    Fractional years only order events within a year; labels show the whole year.
    """
    if not events:
        raise ValueError("timeline needs at least one (year, label, family) event")
    events = sorted(events)
    families = list(dict.fromkeys(f for _, _, f in events))
    colours = plt.get_cmap("tab10")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.32 * len(events) + 1.2))
    rows = np.arange(len(events))[::-1]
    for row, (year, label, family) in zip(rows, events):
        c = colours(families.index(family))
        ax.hlines(row, events[0][0] - 2, year, color=c, lw=0.6, alpha=0.4)
        ax.plot(year, row, "o", color=c, ms=7)
    ax.set_yticks(rows, [f"{int(y)}  {label}" for y, label, _ in events], fontsize=9)
    for f in families:
        ax.plot([], [], "o", color=colours(families.index(f)), label=f)
    ax.legend(loc="lower left", fontsize=8, title="family", title_fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set(title=title, xlabel="year")
    return ax
