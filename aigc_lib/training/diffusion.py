"""Training a diffusion model: the simple epsilon loss, Adam, and an exponential moving average.

:func:`train_diffusion` minimizes :meth:`~aigc_lib.models.diffusion.Diffusion.loss` with Adam, a
short warm-up and a cosine decay of the learning rate, and keeps an exponential moving average
(EMA) of the weights, which is what the trained model holds at the end (EMA weights sample better
than the last iterate). The book's trained diffusion models are recipes in :mod:`aigc_lib.zoo.diffusion`.
"""
from __future__ import annotations

import copy
import math

import torch
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads, model_device, seed_everything
from aigc_lib.models.diffusion import Diffusion
from aigc_lib.training.loop import check_finite


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


@torch.enable_grad()
def train_diffusion(model: Diffusion, x: torch.Tensor, y: torch.Tensor | None = None, *, steps: int,
                    batch_size: int = 64, lr: float = 2e-3, warmup: int = 50, p_uncond: float = 0.0,
                    ema_decay: float = 0.999, grad_clip: float = 1.0, seed: int = 0,
                    progress: bool = True, desc: str = "diffusion") -> dict:
    """Fit ``model`` to data ``x`` (already in the network's space; labels ``y`` if conditional).

    Returns ``{"loss": per-step loss}``. At the end the model holds the EMA weights (decay
    ``ema_decay``, with the usual warm-up min(decay, (1 + k) / (10 + k)) at step k). Raises
    ``FloatingPointError`` if the loss becomes NaN or infinite.
    """
    if steps < 1 or batch_size < 1 or not lr > 0 or not 0 <= ema_decay < 1:
        raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0 and 0 <= ema_decay < 1, "
                         f"got {steps}, {batch_size}, {lr}, {ema_decay}")
    if (y is None) != (model.n_classes == 0):
        raise ValueError("pass labels y exactly when the denoiser is conditional (n_classes > 0)")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values; clean the data before training")
    g = seed_everything(seed)
    device = model_device(model)
    ema = copy.deepcopy(model).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * k / steps)))
    history = {"loss": []}
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for k in bar:
        fit_threads()
        idx = torch.randint(len(x), (batch_size,), generator=g)
        loss = model.loss(x[idx].to(device), None if y is None else y[idx].to(device), p_uncond, generator=g)
        history["loss"].append(check_finite(loss.item(), "the diffusion loss", k))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        schedule.step()
        ema_update(ema, model, min(ema_decay, (1 + k) / (10 + k)))
        if k % 50 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    model.load_state_dict(ema.state_dict())
    model.eval()
    return history
