"""Metrics for toy data: how many modes of the Gaussian ring a generator covers, and how well; and
how much of the attention chapter's reversal task a sequence model gets right."""
from __future__ import annotations

import torch
from torch import nn

from aigc_lib.data.toy import ring_modes


def ring_metrics(samples: torch.Tensor, k: int = 8, radius: float = 2.0, std: float = 0.05,
                 min_share: float = 0.25) -> dict:
    """Score samples against the k-Gaussian ring of :func:`aigc_lib.data.ring`.

    A sample is *high quality* when it lies within 3 std of its nearest mode (a real sample does
    with probability 1 - exp(-9/2) = 98.9% in 2-D). A mode is *covered* when it receives at least
    ``min_share`` of the high-quality samples it would get if all n samples were high quality and
    spread evenly (``min_share * n / k``).

    Returns ``{"modes_covered": int, "high_quality": float share in [0, 1],
    "counts": list of high-quality samples per mode}``.
    """
    if not isinstance(samples, torch.Tensor) or samples.dim() != 2 or samples.shape[1] != 2 or len(samples) == 0:
        got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"samples must be a non-empty N x 2 tensor of 2-D points, got {got}")
    if k < 1 or radius <= 0 or std <= 0 or not 0 < min_share <= 1:
        raise ValueError("need k >= 1, radius > 0, std > 0 and 0 < min_share <= 1")
    samples = samples.detach().float().cpu()
    dist = torch.cdist(samples, ring_modes(k, radius).float())  # N x k
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=k)
    covered = int((counts >= min_share * len(samples) / k).sum())
    return {"modes_covered": covered, "high_quality": good.float().mean().item(), "counts": counts.tolist()}


@torch.no_grad()
def sequence_accuracy(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(token accuracy, whole-sequence accuracy) of ``argmax`` predictions on the graded positions.

    Teacher-forced: every position sees the true prefix. A sequence is all right under teacher
    forcing exactly when greedy decoding reproduces it (by induction over its positions), so the
    sequence accuracy is also that of greedy generation.
    """
    logits, _ = model(idx)
    graded = targets >= 0
    correct = (logits.argmax(-1) == targets) | ~graded
    token_acc = ((logits.argmax(-1) == targets) & graded).sum().item() / graded.sum().item()
    return token_acc, correct.all(dim=1).float().mean().item()
