"""Training the small CLIP: the symmetric InfoNCE loss on images and freshly drawn captions.

Every step draws a batch of images and, for each, a new caption from the seen templates
(:func:`aigc_lib.data.captions.training_captions`), so the text encoder meets every phrasing of
every digit many times. AdamW with a short warm-up and a cosine decay.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads, model_device, seed_everything
from aigc_lib.data.captions import WordTokenizer, training_captions
from aigc_lib.models.clip import CLIP
from aigc_lib.training.loop import check_finite


@torch.enable_grad()
def train_clip(model: CLIP, x: torch.Tensor, y: torch.Tensor, attrs: dict[str, torch.Tensor],
               tokenizer: WordTokenizer, *, steps: int, batch_size: int = 256, lr: float = 2e-3,
               weight_decay: float = 0.05, warmup: int = 50, seed: int = 0, progress: bool = True) -> dict:
    """Fit ``model`` to images ``x`` (N x 1 x 28 x 28 in [0, 1]) with digits ``y`` and measured
    attribute labels ``attrs``; returns ``{"loss": per-step loss}``."""
    if steps < 1 or batch_size < 2 or not lr > 0:
        raise ValueError(f"need steps >= 1, batch_size >= 2 and lr > 0, got {steps}, {batch_size}, {lr}")
    g = seed_everything(seed)
    device = model_device(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * k / steps)))
    history = {"loss": []}
    model.train()
    for k in tqdm(range(steps), desc="CLIP", disable=not progress):
        fit_threads()
        idx = torch.randperm(len(x), generator=g)[:batch_size]
        texts = training_captions(y[idx], {a: v[idx] for a, v in attrs.items()}, g)
        loss = model.loss(x[idx].to(device), tokenizer(texts).to(device))
        history["loss"].append(check_finite(loss.item(), "the CLIP loss", k))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return history
