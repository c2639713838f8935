"""LoRA: low-rank adaptation of a frozen linear layer (Hu et al. 2021).

A pretrained weight ``W`` (out x in) stays frozen; the layer learns a low-rank update instead::

    h = W x + b + (alpha / r) * B A x        A: r x in,  B: out x r,  r << min(in, out)

``A`` starts random and ``B`` at zero, so the adapted model starts exactly as the pretrained one.
Only ``r * (in + out)`` numbers per matrix train, instead of ``in * out``; for inference the
update folds back into the weight, ``W' = W + (alpha / r) B A`` (:func:`merge_lora`), and the
model is as fast as before. The initialisation and scaling are those of Hugging Face ``peft``,
which the tests check this module against on GPT-2.

* :class:`LoRALinear`: one ``nn.Linear`` wrapped with ``A`` and ``B``;
* :func:`add_lora`: wrap the named linear layers of a model and freeze everything else;
* :func:`merge_lora`: fold every update into its weight and unwrap the layers;
* :func:`lora_state_dict`: the adapter alone (what a LoRA checkpoint stores).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(dropout(x)))`` with ``base`` frozen."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRA wraps nn.Linear layers, got {type(base).__name__}")
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"the LoRA rank r must be a positive int, got {r!r}")
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A
        self.dropout = nn.Dropout(dropout)
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * (self.dropout(x) @ self.A.T @ self.B.T)

    def delta_weight(self) -> torch.Tensor:
        """``(alpha / r) B A``: the update to ``W`` this layer has learned."""
        return self.scaling * self.B @ self.A

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W + (alpha / r) B A``: the same function, no extra cost."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.delta_weight())
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def add_lora(model: nn.Module, targets: tuple[str, ...], r: int, alpha: float, dropout: float = 0.0) -> nn.Module:
    """Wrap every ``nn.Linear`` whose attribute name is in ``targets`` (e.g. ``("c_attn",)``) with
    :class:`LoRALinear`; freeze every other parameter. Returns ``model``, changed in place."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, r, alpha, dropout))
                wrapped.append(name)
    if not wrapped:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear named {list(targets)} in the model; its linear layers are {linears}")
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` with its merged ``nn.Linear``; returns ``model``, changed in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors (every ``A`` and ``B``): all a LoRA checkpoint needs beside the base model."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".A", ".B"))}
