"""The pretraining chapter's checked exercises: the loss in nats per character, the learning-rate schedule."""
import math

import torch
from torch import nn

from aigc_lib.exercises.core import exercise
from aigc_lib.metrics.text import token_nll
from aigc_lib.training.lm import LMTrainConfig, lr_at as _lr_at


class _Logits(nn.Module):
    """A stand-in model that returns the logits it was given, whatever the ids."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits


def _nats_per_char(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean -log p(x_t | x_<t) over t = 1..T-1, where logits[:, t] predicts ids[:, t + 1]
    (``metrics.text.token_nll``, averaged)."""
    return token_nll(_Logits(logits), ids).mean()


def _lr(step: int, lr: float, min_lr: float, warmup_steps: int, steps: int) -> float:
    """``training.lm.lr_at``: linear warm-up, then cosine decay from lr to min_lr."""
    config = LMTrainConfig(steps=steps, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps)
    return _lr_at(step, config)


@exercise(reference=_nats_per_char)
def nats_per_char(g):
    """(logits of shape (B, T, V), ids of shape (B, T)): logits[:, t] comes from ids[:, :t + 1]."""
    yield torch.zeros(1, 2, 4), torch.tensor([[0, 3]])          # uniform over 4: log 4 nats
    for B, T, V in [(1, 5, 3), (2, 8, 11), (3, 16, 65)]:
        yield torch.randn(B, T, V, generator=g) * 2, torch.randint(0, V, (B, T), generator=g)


@nats_per_char.mistake("logits[:, t] predicts the *next* id: compare logits[:, :-1] with ids[:, 1:]")
def _(logits, ids):
    return nn.functional.cross_entropy(logits.transpose(1, 2), ids)


@nats_per_char.mistake("shifted the wrong way: logits[:, t] predicts ids[:, t + 1], so drop the last "
                       "logits and the first id")
def _(logits, ids):
    return nn.functional.cross_entropy(logits[:, 1:].transpose(1, 2), ids[:, :-1])


@nats_per_char.mistake("nats use the natural log: you converted to bits (divided by ln 2)")
def _(logits, ids):
    return nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:]) / math.log(2)


@nats_per_char.mistake("the loss per character is a mean over the predicted characters: you summed")
def _(logits, ids):
    return nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="sum")


@exercise(reference=_lr)
def lr_schedule(g):
    """(step, lr, min_lr, warmup_steps, steps)."""
    for step in (0, 1, 9, 10, 11, 55, 99, 100, 150):
        yield step, 1e-3, 1e-4, 10, 100
    yield 0, 3e-4, 0.0, 0, 20
    yield 7, 3e-4, 0.0, 0, 20


@lr_schedule.mistake("the warm-up starts above zero: lr (s + 1) / (warmup + 1), so step 0 already trains; "
                     "you used lr s / warmup")
def _(step, lr, min_lr, warmup_steps, steps):
    if step < warmup_steps:
        return lr * step / warmup_steps
    return _lr(step, lr, min_lr, warmup_steps, steps)


@lr_schedule.mistake("the cosine decays to min_lr, not to zero: min_lr + (lr - min_lr)(1 + cos(pi p)) / 2")
def _(step, lr, min_lr, warmup_steps, steps):
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    p = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * 0.5 * (1 + math.cos(math.pi * p))


@lr_schedule.mistake("the decay's progress counts from the end of the warm-up: (s - warmup) / (steps - warmup), "
                     "not s / steps")
def _(step, lr, min_lr, warmup_steps, steps):
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    p = min(1.0, step / steps)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


@lr_schedule.mistake("after the last step the rate stays at min_lr: clamp the progress at 1 (the cosine "
                     "climbs back up after pi)")
def _(step, lr, min_lr, warmup_steps, steps):
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    p = (step - warmup_steps) / max(1, steps - warmup_steps)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))
