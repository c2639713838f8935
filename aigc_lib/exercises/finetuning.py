"""The fine-tuning chapter's checked exercises: a LoRA layer's forward pass and the DPO loss."""
import torch
from torch import nn
from torch.nn import functional as F

from aigc_lib.exercises.core import exercise
from aigc_lib.models.lora import LoRALinear
from aigc_lib.training.preference import dpo_loss as _dpo_loss


@torch.no_grad()
def _lora_forward(x, W, b, A, B, alpha):
    """``LoRALinear`` around ``nn.Linear(W, b)`` with rank r = A.shape[0]: W x + b + (alpha / r) B A x."""
    base = nn.Linear(W.size(1), W.size(0))
    base.weight.copy_(W), base.bias.copy_(b)
    layer = LoRALinear(base, r=A.size(0), alpha=alpha)
    layer.A.copy_(A), layer.B.copy_(B)
    return layer(x)


def _dpo(pi_w, pi_l, ref_w, ref_l, beta):
    """The mean DPO loss of ``training.preference.dpo_loss`` (without the implicit rewards)."""
    return _dpo_loss(pi_w, pi_l, ref_w, ref_l, beta)[0]


@exercise(reference=_lora_forward)
def lora_forward(g):
    """(x (N, d_in), W (d_out, d_in), b (d_out,), A (r, d_in), B (d_out, r), alpha)."""
    for n, d_in, d_out, r, alpha in [(2, 3, 2, 1, 1.0), (4, 8, 6, 2, 16.0), (3, 16, 16, 4, 8.0)]:
        yield (torch.randn(n, d_in, generator=g), torch.randn(d_out, d_in, generator=g),
               torch.randn(d_out, generator=g), torch.randn(r, d_in, generator=g),
               torch.randn(d_out, r, generator=g), alpha)


@lora_forward.mistake("the update is scaled by alpha / r: you left out the scale")
def _(x, W, b, A, B, alpha):
    return x @ W.T + b + x @ A.T @ B.T


@lora_forward.mistake("the scale is alpha / r, not alpha")
def _(x, W, b, A, B, alpha):
    return x @ W.T + b + alpha * (x @ A.T @ B.T)


@lora_forward.mistake("LoRA adds B A x to the frozen layer's output W x + b: you left out the base layer")
def _(x, W, b, A, B, alpha):
    return alpha / A.size(0) * (x @ A.T @ B.T)


@exercise(reference=_dpo)
def dpo_loss(g):
    """(pi_w, pi_l, ref_w, ref_l, beta): summed log-probabilities of the responses, one per pair."""
    zeros = torch.zeros(3)
    yield zeros, zeros, zeros, zeros, 0.1                  # policy = reference: log 2
    yield torch.tensor([-5.0]), torch.tensor([-9.0]), torch.tensor([-6.0]), torch.tensor([-6.0]), 0.5
    for n, beta in [(4, 0.1), (8, 1.0)]:
        yield tuple(torch.randn(n, generator=g) * 5 - 20 for _ in range(4)) + (beta,)


@dpo_loss.mistake("sign error in the margin: -log sigmoid(r_w - r_l) with the *preferred* response's "
                  "reward first")
def _(pi_w, pi_l, ref_w, ref_l, beta):
    return -F.logsigmoid(beta * (pi_l - ref_l) - beta * (pi_w - ref_w)).mean()


@dpo_loss.mistake("each implicit reward is beta * (log pi - log pi_ref): you left out beta")
def _(pi_w, pi_l, ref_w, ref_l, beta):
    return -F.logsigmoid((pi_w - ref_w) - (pi_l - ref_l)).mean()


@dpo_loss.mistake("the rewards are log-ratios to the *reference*: subtract ref_w and ref_l")
def _(pi_w, pi_l, ref_w, ref_l, beta):
    return -F.logsigmoid(beta * (pi_w - pi_l)).mean()


@dpo_loss.mistake("the loss is *minus* log sigmoid of the margin: yours is negative")
def _(pi_w, pi_l, ref_w, ref_l, beta):
    return F.logsigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))).mean()
