"""Fine-tuning a pretrained language model: which parameters learn, and which tokens the loss counts.

* Which parameters: all of them (full fine-tuning), the last block only
  (:func:`freeze_all_but_last_block`), or a low-rank adapter (:func:`aigc_lib.models.lora.add_lora`).
  Continued pretraining on a new corpus is :func:`~aigc_lib.training.lm.train_lm` on that corpus;
  its optimizer already skips frozen parameters.
* Which tokens: supervised fine-tuning (SFT) on ``(prompt, response)`` pairs counts the loss on the
  response only (:func:`pack`, :func:`train_sft`)::

      L_SFT = -(1 / |R|) sum_{t in R} log p(x_t | x_<t)      R: the response's positions

  so the model learns to answer, not to write prompts.
* Measured by :func:`greedy_answers` and :func:`exact_match`.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from aigc_lib.config import run_seed
from aigc_lib.sampling import generate
from aigc_lib.training.loop import train_steps


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters will be updated (``requires_grad``), shared ones counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze_all_but_last_block(model: nn.Module) -> nn.Module:
    """Train only the GPT's last block and final LayerNorm (the tied embedding stays frozen)."""
    last = len(model.transformer.h) - 1
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith((f"transformer.h.{last}.", "transformer.ln_f.")))
    return model


def pack(tokenizer, prompts: Sequence[str], responses: Sequence[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``prompt + response`` (B x ``length``, zero-padded) and a mask (B x ``length - 1``)
    that is 1 where the *target* ``ids[:, t+1]`` belongs to the response."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts and {len(responses)} responses; pair them one to one")
    ids = torch.zeros(len(prompts), length, dtype=torch.long)
    mask = torch.zeros(len(prompts), length - 1)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        p_ids, r_ids = tokenizer.encode(p), tokenizer.encode(r)
        n = len(p_ids) + len(r_ids)
        if n > length:
            raise ValueError(f"example {i} has {n} tokens, more than length={length}: {p + r!r}")
        if not p_ids or not r_ids:
            raise ValueError(f"example {i} needs a non-empty prompt and response")
        ids[i, :n] = torch.tensor(p_ids + r_ids)
        mask[i, len(p_ids) - 1:n - 1] = 1.0
    return ids, mask


def sft_targets(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` for the model's loss: ``y`` is ``ids`` shifted by one, ``-1`` (ignored) off the response."""
    return ids[:, :-1], ids[:, 1:].masked_fill(mask == 0, -1)


def train_sft(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, *, steps: int, batch_size: int,
              lr: float, seed: int = 0, progress: bool = True, warmup_steps: int = 0, weight_decay: float = 0.0,
              final_lr: float = 0.0, evaluate: Callable[[nn.Module], float] | None = None,
              eval_interval: int = 0) -> dict:
    """AdamW on the response-masked loss over random batches of the packed examples: the learning
    rate rises linearly over ``warmup_steps``, then decays on a cosine to ``final_lr`` times ``lr``.
    Returns ``{"loss": [...]}`` per step, and with ``evaluate`` and ``eval_interval``,
    ``"eval": [(step, evaluate(model)), ...]`` every ``eval_interval`` steps."""
    x, y = sft_targets(ids, mask)
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(run_seed(seed))

    def batches():
        while True:
            i = torch.randint(len(x), (batch_size,), generator=g)
            yield x[i].to(device), y[i].to(device)

    def factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        done = (s - warmup_steps) / max(1, steps - warmup_steps)
        return final_lr + (1 - final_lr) * 0.5 * (1 + math.cos(math.pi * done))

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if evaluate is None or eval_interval <= 0:
        return train_steps(model, batches(), lambda m, b: m(*b)[1], steps=steps, optimizer=optimizer,
                           scheduler=lambda _: schedule, grad_clip=1.0, desc="SFT", progress=progress)
    history: dict = {"loss": [], "eval": []}
    it, done = batches(), 0
    while done < steps:  # the same batches and schedule, evaluated every eval_interval steps
        n = min(eval_interval, steps - done)
        part = train_steps(model, it, lambda m, b: m(*b)[1], steps=n, optimizer=optimizer,
                           scheduler=lambda _: schedule, grad_clip=1.0, desc="SFT", progress=progress)
        history["loss"] += part["loss"]
        done += n
        history["eval"].append((done, evaluate(model)))
    return history


@torch.no_grad()
def complete(model: nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int, *, stop: str = "\n",
             do_sample: bool = False, num_return_sequences: int = 1,
             generator: torch.Generator | None = None) -> list[list[str]]:
    """``num_return_sequences`` continuations of each prompt, each cut after the first ``stop``
    (which is kept, so a finished response ends with it). Greedy unless ``do_sample``.

    Prompts of equal length run as one batch."""
    model.eval()
    device = next(model.parameters()).device
    stop_id = tokenizer.encode(stop)[0]
    out: list[list[str]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(tokenizer.encode(p)), []).append(i)
    for length, rows in sorted(by_length.items()):
        ids = torch.tensor([tokenizer.encode(prompts[i]) for i in rows], device=device)
        new = min(max_new_tokens, model.config.block_size - length)
        texts = generate(model, ids, new, do_sample=do_sample, num_return_sequences=num_return_sequences,
                         eos_token_id=stop_id, generator=generator)[:, length:]
        for j, row in enumerate(texts):
            text = tokenizer.decode(row.tolist())
            out[rows[j // num_return_sequences]].append(text[:text.index(stop) + 1] if stop in text else text)
    return out


def greedy_answers(model: nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16) -> list[str]:
    """The model's greedy answer to each prompt: its continuation up to the first newline."""
    return [texts[0].removesuffix("\n") for texts in complete(model, tokenizer, prompts, max_new_tokens)]


def exact_match(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """The share of predictions equal to their answer."""
    if len(predictions) != len(answers) or not answers:
        raise ValueError(f"need as many predictions as answers (and at least one), got {len(predictions)} "
                         f"and {len(answers)}")
    return sum(p == a for p, a in zip(predictions, answers)) / len(answers)
