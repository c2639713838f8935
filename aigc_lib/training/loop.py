"""The supervised training loop the small models share, and the one check that a loss is finite.

:func:`train_steps` is AdamW (or any optimizer) on ``loss_fn(model, batch)`` for a fixed number of
steps, with an optional learning-rate schedule and gradient clipping. The MNIST classifier,
the attention chapter's toy sequence model and the applications chapter's melody GPT train with it; the GAN, VAE and
language-model loops (:mod:`~aigc_lib.training.gan`, :mod:`~aigc_lib.training.vae`,
:mod:`~aigc_lib.training.lm`) have their own, because their steps are not one loss and one
optimizer.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads


ADVICE = "Lower the learning rate, check the data for NaN or infinite values, or clip the gradients."


def check_finite(loss: torch.Tensor | float, what: str = "loss", step: int | None = None, advice: str = ADVICE):
    """Return ``loss`` unchanged, or raise ``FloatingPointError`` with ``advice`` if it is NaN or infinite."""
    value = loss.item() if isinstance(loss, torch.Tensor) and loss.numel() == 1 else loss
    finite = bool(torch.isfinite(value).all()) if isinstance(value, torch.Tensor) else math.isfinite(value)
    if not finite:
        where = f" at step {step}" if step is not None else ""
        raise FloatingPointError(f"{what} became {value}{where}: training diverged. {advice}")
    return loss


@torch.enable_grad()  # callable from inside a no_grad block (e.g. a metric that needs a model)
def train_steps(model: nn.Module, batches: Iterable[Any], loss_fn: Callable[[nn.Module, Any], torch.Tensor], *,
                steps: int, optimizer: torch.optim.Optimizer,
                scheduler: Callable[[torch.optim.Optimizer], Any] | None = None, grad_clip: float = 0.0,
                desc: str = "training", progress: bool = True) -> dict[str, list[float]]:
    """``steps`` optimizer steps on ``loss_fn(model, batch)`` for the batches ``batches`` yields.

    ``scheduler(optimizer)`` builds a learning-rate schedule stepped after every step;
    ``grad_clip > 0`` clips the global gradient norm. Returns ``{"loss": [per-step loss]}``;
    raises ``FloatingPointError`` at the first NaN or infinite loss. The model is left in eval mode.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    schedule = scheduler(optimizer) if scheduler is not None else None
    model.train()
    losses: list[float] = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for step, batch in zip(range(steps), batches):
        fit_threads()  # the cores other processes leave free (config.py)
        loss = loss_fn(model, batch)
        losses.append(check_finite(loss.item(), step=step))  # before the step: no NaN reaches the weights
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        bar.update()
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    if len(losses) < steps:
        raise ValueError(f"the batches ran out after {len(losses)} of {steps} steps")
    model.eval()
    return {"loss": losses}
