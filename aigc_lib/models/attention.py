"""Attention written out: the teaching versions behind the book's GPT.

* :func:`scaled_dot_product_attention`: ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V``
  step by step, returning the attention weights too (``F.scaled_dot_product_attention`` computes
  the same output faster; the tests check they agree);
* :func:`causal_mask` and :func:`padding_mask`: which keys each query may see;
* :class:`MultiHeadAttention`: ``MultiHead(X) = Concat(head_1..head_h) W_O`` with
  ``head_i = Attention(X W_Q^i, X W_K^i, X W_V^i)``;
* :func:`sinusoidal_positions` and :class:`LearnedPositions`: how a Transformer knows word order.

The attention chapter's toy task, which cannot be solved without attending to the right position, is
:func:`aigc_lib.data.toy.reversal_task` (trained by
:func:`aigc_lib.training.supervised.train_sequence_task`, scored by
:func:`aigc_lib.metrics.toy.sequence_accuracy`).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, *, is_causal: bool = False,
                                 return_weights: bool = False):
    """``softmax(q k^T / sqrt(d_k) + M) v``, written out.

    ``q`` is ``... x T_q x d_k``, ``k`` is ``... x T_k x d_k``, ``v`` is ``... x T_k x d_v``.
    ``mask`` follows ``F.scaled_dot_product_attention``: a boolean mask is True where a query may
    attend to a key; a float mask is added to the scores. ``is_causal`` lets query ``i`` see keys
    ``j <= i`` only. Row ``i`` of the weights is a distribution over the keys ``j`` (the softmax
    runs over ``j`` for each query ``i``). Returns the output, and the weights if asked.
    """
    if q.size(-1) != k.size(-1):
        raise ValueError(f"queries and keys must have the same last dimension d_k, got {q.size(-1)} and {k.size(-1)}")
    if k.size(-2) != v.size(-2):
        raise ValueError(f"keys and values must come in pairs: {k.size(-2)} keys but {v.size(-2)} values")
    if is_causal and mask is not None:
        raise ValueError("pass either is_causal=True or an explicit mask, not both")
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # ... x T_q x T_k: how well query i matches key j
    if is_causal:
        mask = causal_mask(q.size(-2), k.size(-2), device=q.device)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1)  # over the keys j, for each query i
    out = weights @ v
    return (out, weights) if return_weights else out


def causal_mask(T_q: int, T_k: int | None = None, *, device=None) -> torch.Tensor:
    """Boolean ``T_q x T_k`` mask, True where query ``i`` may see key ``j``: ``j <= i``.

    Aligned top-left like ``F.scaled_dot_product_attention(is_causal=True)``.
    """
    T_k = T_q if T_k is None else T_k
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Boolean ``B x 1 x 1 x T`` mask, True for the first ``lengths[b]`` (real) keys of row ``b``.

    It broadcasts over heads and queries, so padded positions are never attended to.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"lengths must be a 1-D tensor of sequence lengths in [1, {T}], got {lengths.tolist()}")
    return (torch.arange(T, device=lengths.device)[None, :] < lengths[:, None])[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """``MultiHead(X) = Concat(head_1, ..., head_h) W_O``, ``head_i = Attention(X W_Q^i, X W_K^i, X W_V^i)``.

    Written-out attention (so the weights can be inspected: ``self.weights`` after a forward) or
    ``F.scaled_dot_product_attention`` with ``fast=True``; both give the same output.
    """

    def __init__(self, d_model: int, n_head: int, *, causal: bool = False, bias: bool = True):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
        self.n_head, self.d_k, self.causal = n_head, d_model // n_head, causal
        self.W_Q = nn.Linear(d_model, d_model, bias=bias)
        self.W_K = nn.Linear(d_model, d_model, bias=bias)
        self.W_V = nn.Linear(d_model, d_model, bias=bias)
        self.W_O = nn.Linear(d_model, d_model, bias=bias)
        self.weights: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.d_k).transpose(1, 2)  # B x h x T x d_k

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, fast: bool = False) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must be B x T x d_model, got shape {tuple(x.shape)}")
        B, T, C = x.shape
        q, k, v = self.split_heads(self.W_Q(x)), self.split_heads(self.W_K(x)), self.split_heads(self.W_V(x))
        is_causal = self.causal and mask is None
        if self.causal and mask is not None:
            mask = mask & causal_mask(T, device=x.device)
        if fast:
            y, self.weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal), None
        else:
            y, self.weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, return_weights=True)
        return self.W_O(y.transpose(1, 2).reshape(B, T, C))  # concatenate the heads, mix them


def sinusoidal_positions(T: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """Vaswani et al.'s encodings, ``T x d``: ``PE[t, 2i] = sin(t / base^(2i/d))``, ``PE[t, 2i+1] = cos(...)``.

    Each pair of dimensions is a clock at its own frequency, so ``PE[t + s]`` is a fixed rotation
    of ``PE[t]`` for every ``t``: relative offsets are linear functions of the encodings.
    """
    if d % 2:
        raise ValueError(f"the model dimension d must be even (sin/cos pairs), got {d}")
    t = torch.arange(T, dtype=torch.float32)[:, None]
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # 1 / base^(2i/d)
    pe = torch.zeros(T, d)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq)
    return pe


class LearnedPositions(nn.Module):
    """GPT's positional encoding: one trained vector per position, ``PE[t] = P[t]``."""

    def __init__(self, block_size: int, d: int):
        super().__init__()
        self.P = nn.Embedding(block_size, d)
        nn.init.normal_(self.P.weight, std=0.02)

    def forward(self, T: int) -> torch.Tensor:
        if T > self.P.num_embeddings:
            raise ValueError(f"only {self.P.num_embeddings} positions were learned; got a sequence of {T}")
        return self.P(torch.arange(T, device=self.P.weight.device))
