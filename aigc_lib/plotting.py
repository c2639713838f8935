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


def attention_heatmaps(weights, tokens: Sequence[str] | None = None, *, titles: Sequence[str] | None = None,
                       title: str = "Attention weights", ncol: int = 4, query_tokens: Sequence[str] | None = None):
    """Plot attention maps (``n x T_q x T_k``, rows = queries, columns = keys) side by side.

    ``tokens`` label the keys (and the queries unless ``query_tokens`` is given); ``titles`` label
    each map (e.g. "layer 1, head 2"). Returns the figure.
    """
    w = weights.detach().cpu().float().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"weights must be n x T_q x T_k (or T_q x T_k), got shape {w.shape}")
    if titles is not None and len(titles) != len(w):
        raise ValueError(f"got {len(titles)} titles for {len(w)} maps")
    ncol = min(ncol, len(w))
    nrow = -(-len(w) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.2 * nrow), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(w):
            ax.axis("off")
            continue
        ax.imshow(w[i], cmap="viridis", vmin=0.0, vmax=1.0)
        if tokens is not None:
            qt = query_tokens if query_tokens is not None else tokens
            ax.set_xticks(range(len(tokens)), tokens, fontsize=7)
            ax.set_yticks(range(len(qt)), qt, fontsize=7)
        ax.set_xlabel("key (attended to)", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- VAE helpers (the VAE chapter)
def reconstruction_grid(x, x_hat, *, title: str = "Test digits and their reconstructions"):
    """Two labelled rows: inputs ``x`` and reconstructions ``x_hat`` (each N x 1 x H x W)."""
    if len(x) != len(x_hat):
        raise ValueError(f"x and x_hat must hold the same number of images, got {len(x)} and {len(x_hat)}")
    return image_grid(torch.cat([torch.as_tensor(x), torch.as_tensor(x_hat)]), nrow=len(x),
                      row_labels=["input", "recon."], title=title)


def latent_manifold(decode, n: int = 15, *, title: str = "Decoded 2-D latent grid", ax=None):
    """Decode an n x n grid of z = (z1, z2) placed at the Gaussian quantiles 1/(2n) ... 1 - 1/(2n).

    ``decode`` maps an (n*n) x 2 tensor to (n*n) x 1 x H x W images in [0, 1]. Quantile spacing
    gives every tile equal prior mass, so the picture shows where p(z) actually puts samples.
    """
    from scipy.stats import norm

    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    q = torch.tensor(norm.ppf((np.arange(n) + 0.5) / n), dtype=torch.float32)
    z = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)  # rows: z2 high -> low
    with torch.no_grad():
        imgs = _to_numpy_images(decode(z))
    h, w = imgs.shape[-2:]
    canvas = imgs[:, 0].reshape(n, n, h, w).transpose(0, 2, 1, 3).reshape(n * h, n * w)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    ticks = np.arange(n) * w + w / 2
    labels = [f"{v:.1f}" for v in q.numpy()]
    ax.set_xticks(ticks[::2], labels[::2]), ax.set_yticks(ticks[::2], labels[::-1][::2])
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$")
    return ax


def latent_scatter(z, labels, *, title: str = "Encoder means of test digits", ax=None):
    """Scatter 2-D latent codes coloured by class label (0-9), with a legend."""
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if z.ndim != 2 or z.shape[1] != 2 or len(z) != len(labels):
        raise ValueError(f"z must be N x 2 with N labels, got {z.shape} and {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    for c in np.unique(labels):
        ax.scatter(*z[labels == c].T, s=6, alpha=0.7, color=plt.get_cmap("tab10")(int(c) % 10), label=str(c))
    ax.set(title=title, xlabel="$\\mu_1(x)$", ylabel="$\\mu_2(x)$")
    ax.legend(markerscale=3, fontsize=8, ncol=2, title="digit")
    return ax


def interpolation_strips(strips: Sequence, *, row_labels: Sequence[str] | None = None,
                         title: str = "Interpolations"):
    """Show each strip (steps x 1 x H x W images) as one labelled row; all strips the same length."""
    if not strips or len({len(s) for s in strips}) != 1:
        raise ValueError("interpolation_strips needs one or more strips of equal length")
    return image_grid(torch.cat([torch.as_tensor(s) for s in strips]), nrow=len(strips[0]),
                      row_labels=row_labels, title=title)


# ----------------------------------------------------------------------------- music (the applications chapter)
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def piano_roll(melodies: Mapping[str, Sequence[int]], durations: Sequence[float] | None = None, *,
               title: str = "Piano roll", ax=None):
    """Draw named melodies (MIDI pitches) as bars: x = time in beats, y = pitch (C notes labelled).

    ``durations`` (beats per note, shared by the melodies) default to one beat each.
    """
    if not melodies:
        raise ValueError("piano_roll needs at least one named melody")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    colours = plt.get_cmap("tab10")
    lo, hi, end = 127, 0, 0.0
    for k, (name, pitches) in enumerate(melodies.items()):
        pitches = [int(p) for p in pitches]
        if not pitches:
            raise ValueError(f"melody {name!r} is empty")
        beats = [1.0] * len(pitches) if durations is None else list(durations)
        if len(beats) != len(pitches):
            raise ValueError(f"melody {name!r} has {len(pitches)} notes but {len(beats)} durations")
        starts = np.concatenate([[0.0], np.cumsum(beats)[:-1]])
        ax.plot([], [], color=colours(k), lw=6, label=name)  # legend entry for the rectangles
        for s, d, p in zip(starts, beats, pitches):
            ax.add_patch(plt.Rectangle((s, p - 0.4), d * 0.95, 0.8, color=colours(k), alpha=0.8))
        lo, hi = min(lo, *pitches), max(hi, *pitches)
        end = max(end, starts[-1] + beats[-1])
    ax.set_xlim(0, end)
    ax.set_ylim(lo - 1.5, hi + 1.5)
    ticks = [p for p in range(lo - 1, hi + 2) if p % 12 in (0, 4, 7)]
    ax.set_yticks(ticks, [f"{NOTE_NAMES[p % 12]}{p // 12 - 1}" for p in ticks], fontsize=8)
    ax.grid(alpha=0.3)
    ax.set(title=title, xlabel="time (beats)", ylabel="pitch")
    if len(melodies) > 1:
        ax.legend(fontsize=8, loc="upper right")
    return ax
