"""A mixture of experts in place of a Transformer block's MLP (Shazeer et al. 2017; Fedus et al. 2022).

A router scores each token against ``n_expert`` expert MLPs and sends it to its top ``k``; the
layer's output is the experts' outputs weighted by the router's probabilities:

    p = softmax(W_r x),   S = top-k indices of p,   y = sum_{e in S} g_e Expert_e(x),

with ``g_e = p_e`` (``norm_topk_prob=False``) or ``g_e = p_e / sum_{e' in S} p_e'`` (Mixtral and
Qwen3-30B-A3B renormalise). Each token pays for ``k`` experts while the layer holds ``n_expert``:
parameters grow without compute per token. Left alone, the router collapses onto a few experts;
the load-balancing loss (Switch Transformer, Fedus et al. 2022, eq. 4-6, as Mixtral and Qwen3-MoE
compute it) pushes it back:

    L_aux = n_expert * sum_e f_e P_e,

``f_e`` the share of tokens that have ``e`` among their top ``k`` (so ``sum_e f_e = k``) and
``P_e`` the router's mean probability for ``e``. It is ``k`` when the load is uniform and
``n_expert`` (its largest value) when every token sends all its probability to the same ``k`` experts.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def load_balancing_loss(probs: torch.Tensor, top_i: torch.Tensor, n_expert: int) -> torch.Tensor:
    """``n_expert * sum_e f_e P_e`` for router probabilities ``probs`` (N x n_expert) and chosen experts ``top_i`` (N x k)."""
    if probs.dim() != 2 or probs.size(-1) != n_expert or top_i.dim() != 2 or top_i.size(0) != probs.size(0):
        raise ValueError(f"probs must be N x {n_expert} and top_i N x k, got {tuple(probs.shape)} and {tuple(top_i.shape)}")
    f = F.one_hot(top_i, n_expert).float().sum(1).mean(0)  # share of tokens routed to each expert
    P = probs.float().mean(0)  # the router's mean probability of each expert
    return n_expert * (f * P).sum()


class Expert(nn.Module):
    """One expert: a SwiGLU MLP ``W2 (SiLU(W1 x) * (W3 x))``, named like the book's :class:`~aigc_lib.models.gpt.MLP`."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = False):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)  # W1 (gate_proj)
        self.c_gate = nn.Linear(n_embd, hidden, bias=bias)  # W3 (up_proj)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # W2 (down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.silu(self.c_fc(x)) * self.c_gate(x))


class MoE(nn.Module):
    """Top-``k`` routing over ``n_expert`` SwiGLU experts of width ``hidden``.

    After each forward pass, ``aux_loss`` holds the load-balancing loss and ``load`` the number of
    token assignments each expert received (a tensor of ``n_expert`` counts summing to ``k`` per token).
    """

    def __init__(self, n_embd: int, hidden: int, n_expert: int, k: int = 2, *, bias: bool = False,
                 norm_topk_prob: bool = True):
        super().__init__()
        if not 1 <= k <= n_expert:
            raise ValueError(f"k (experts per token) must be in [1, n_expert={n_expert}], got {k}")
        self.n_expert, self.k, self.norm_topk_prob = n_expert, k, norm_topk_prob
        self.router = nn.Linear(n_embd, n_expert, bias=False)  # W_r
        self.experts = nn.ModuleList(Expert(n_embd, hidden, bias) for _ in range(n_expert))
        self.aux_loss: torch.Tensor | None = None
        self.load: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # every token of the batch routes on its own
        probs = F.softmax(self.router(x).float(), dim=-1)
        top_p, top_i = probs.topk(self.k, dim=-1)  # N x k
        if self.norm_topk_prob:
            top_p = top_p / top_p.sum(-1, keepdim=True)
        top_p = top_p.to(x.dtype)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = (top_i == e).nonzero(as_tuple=True)  # the tokens that chose expert e
            if token.numel():
                y.index_add_(0, token, expert(x[token]) * top_p[token, slot, None])
        self.aux_loss = load_balancing_loss(probs, top_i, self.n_expert)
        self.load = torch.bincount(top_i.flatten(), minlength=self.n_expert).detach()
        return y.reshape(shape)
