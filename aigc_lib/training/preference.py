"""Direct preference optimization (DPO; Rafailov et al. 2023), from scratch.

Given a prompt ``x`` and two responses, a preferred ``y_w`` and a dispreferred ``y_l``, DPO trains
the policy ``pi`` against a frozen reference ``pi_ref`` (the model before this stage) with::

    L_DPO = -log sigmoid( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x))
                                 - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

It is the loss whose minimiser is the optimum of RLHF's objective, "maximise a reward minus
``beta`` times the KL divergence to ``pi_ref``", when the reward is the one the preferences imply
under the Bradley-Terry model; ``beta * log(pi / pi_ref)`` plays the reward (the "implicit reward").
No reward model and no sampling during training. The tests check :func:`dpo_loss` against
``trl``'s DPO loss (``loss_type="sigmoid"``).

* :func:`response_logprobs`: ``log pi(y|x)``, summed over the response's tokens;
* :func:`dpo_loss`: the loss and the implicit rewards;
* :func:`train_dpo`: AdamW on the loss over random batches of pairs;
* :func:`preference_pairs`: pairs from sampled responses and a rule that says which are preferred;
* :func:`sequence_kl`: a Monte Carlo estimate of ``KL(pi || pi_ref)`` per response.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from aigc_lib.config import run_seed
from aigc_lib.training.loop import train_steps


def response_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_t mask[:, t] * log p(ids[:, t+1] | ids[:, :t+1])``: a response's log-probability (B,)."""
    if mask.shape != (ids.size(0), ids.size(1) - 1):
        raise ValueError(f"mask must be B x (T-1) = {(ids.size(0), ids.size(1) - 1)} for ids {tuple(ids.shape)}, "
                         f"got {tuple(mask.shape)} (see aigc_lib.training.finetune.pack)")
    logits, _ = model(ids[:, :-1])
    logp = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, ids[:, 1:, None]).squeeze(2)
    return (logp * mask).sum(dim=1)


def dpo_loss(pi_w: torch.Tensor, pi_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
             beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss (mean over pairs) and the implicit rewards ``beta * log(pi / pi_ref)`` of the
    preferred and dispreferred responses, from their log-probabilities under policy and reference."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0 (it weighs the KL to the reference), got {beta}")
    r_w, r_l = beta * (pi_w - ref_w), beta * (pi_l - ref_l)
    return -F.logsigmoid(r_w - r_l).mean(), r_w.detach(), r_l.detach()


def train_dpo(policy: nn.Module, reference: nn.Module, chosen: tuple[torch.Tensor, torch.Tensor],
              rejected: tuple[torch.Tensor, torch.Tensor], *, beta: float, steps: int, batch_size: int,
              lr: float, seed: int = 0, progress: bool = True) -> dict:
    """Train ``policy`` in place on pairs given as packed ``(ids, mask)`` of the chosen and the
    rejected responses (:func:`aigc_lib.training.finetune.pack`). The reference's log-probabilities
    are computed once. Returns ``{"loss": [...], "reward_margin": [...]}`` per step."""
    (ids_w, mask_w), (ids_l, mask_l) = chosen, rejected
    if len(ids_w) != len(ids_l):
        raise ValueError(f"got {len(ids_w)} chosen and {len(ids_l)} rejected responses; they come in pairs")
    device = next(policy.parameters()).device
    reference.eval()
    with torch.no_grad():
        ref_w = response_logprobs(reference, ids_w.to(device), mask_w.to(device))
        ref_l = response_logprobs(reference, ids_l.to(device), mask_l.to(device))
    g = torch.Generator().manual_seed(run_seed(seed))
    margins: list[float] = []

    def batches():
        while True:
            yield torch.randint(len(ids_w), (batch_size,), generator=g)

    def loss_fn(model: nn.Module, i: torch.Tensor) -> torch.Tensor:
        pi_w = response_logprobs(model, ids_w[i].to(device), mask_w[i].to(device))
        pi_l = response_logprobs(model, ids_l[i].to(device), mask_l[i].to(device))
        loss, r_w, r_l = dpo_loss(pi_w, pi_l, ref_w[i.to(device)], ref_l[i.to(device)], beta)
        margins.append((r_w - r_l).mean().item())
        return loss

    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    schedule = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    history = train_steps(policy, batches(), loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule,
                          grad_clip=1.0, desc="DPO", progress=progress)
    return {**history, "reward_margin": margins}


def preference_pairs(prompts: Sequence[str], samples: Sequence[Sequence[str]],
                     prefer: Callable[[str], bool]) -> list[tuple[str, str, str]]:
    """``(prompt, chosen, rejected)`` triples: for each prompt, its sampled responses that ``prefer``
    accepts paired one to one with those it rejects (responses cut off before their end are left out)."""
    pairs = []
    for prompt, responses in zip(prompts, samples, strict=True):
        finished = [r for r in responses if r.endswith("\n")]
        good, bad = [r for r in finished if prefer(r)], [r for r in finished if not prefer(r)]
        pairs += [(prompt, w, l) for w, l in zip(good, bad)]
    return pairs


@torch.no_grad()
def sequence_kl(policy: nn.Module, reference: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """``KL(pi || pi_ref)`` per response, estimated as the mean of ``log pi(y|x) - log pi_ref(y|x)``
    over responses ``y`` *sampled from the policy* (packed as ``ids``, ``mask``)."""
    return (response_logprobs(policy, ids, mask) - response_logprobs(reference, ids, mask)).mean().item()
