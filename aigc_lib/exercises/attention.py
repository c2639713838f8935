"""The attention chapter's checked exercises: causal attention, sinusoidal position encodings."""
import math

import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.models.attention import scaled_dot_product_attention, sinusoidal_positions as _sinusoidal


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_k) + causal mask) v: ``scaled_dot_product_attention(is_causal=True)``."""
    return scaled_dot_product_attention(q, k, v, is_causal=True)


@exercise(reference=_causal_attention)
def causal_attention(g):
    """(q, k, v) of shape (batch, T, d_k), (batch, T, d_k), (batch, T, d_v)."""
    yield torch.ones(1, 1, 4), torch.ones(1, 1, 4), torch.tensor([[[1.0, 2.0]]])   # T = 1
    for B, T, d_k, d_v in [(1, 3, 4, 2), (2, 5, 16, 8), (3, 7, 8, 8)]:
        yield (torch.randn(B, T, d_k, generator=g) * 2, torch.randn(B, T, d_k, generator=g) * 2,
               torch.randn(B, T, d_v, generator=g))


def _attend(q, k, v, scale, allowed, dim=-1):
    scores = (q @ k.transpose(-2, -1)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=dim) @ v


def _tril(q, diagonal=0):
    T = q.size(-2)
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal)


@causal_attention.mistake("scale the scores by 1/sqrt(d_k): without it they grow with d_k and the softmax "
                          "saturates")
def _(q, k, v):
    return _attend(q, k, v, 1.0, _tril(q))


@causal_attention.mistake("the scale is 1/sqrt(d_k), not 1/d_k")
def _(q, k, v):
    return _attend(q, k, v, 1 / q.size(-1), _tril(q))


@causal_attention.mistake("off by one: query i may see key i itself (j <= i); your mask hides the diagonal, "
                          "so the first query sees nothing (NaN)")
def _(q, k, v):
    return _attend(q, k, v, 1 / math.sqrt(q.size(-1)), _tril(q, -1))


@causal_attention.mistake("off by one: query i sees keys j <= i, your mask lets it see key i + 1 too")
def _(q, k, v):
    return _attend(q, k, v, 1 / math.sqrt(q.size(-1)), _tril(q, 1))


@causal_attention.mistake("the softmax runs over the keys (the last dimension of the scores), for each query")
def _(q, k, v):
    return _attend(q, k, v, 1 / math.sqrt(q.size(-1)), _tril(q), dim=-2)


@exercise(reference=_sinusoidal)
def sinusoidal_positions(g):
    """(T, d): PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(t / 10000^(2i/d))."""
    yield 1, 2
    yield 4, 2
    yield 6, 8
    yield 50, 32


def _angles(T, d, exponent):
    t = torch.arange(T, dtype=torch.float32)[:, None]
    return t * 10000.0 ** (-exponent)


@sinusoidal_positions.mistake("sin and cos are interleaved: even dimensions 2i hold sin, odd ones 2i+1 cos; "
                              "you put all the sines first and then the cosines")
def _(T, d):
    a = _angles(T, d, torch.arange(0, d, 2) / d)
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


@sinusoidal_positions.mistake("the frequency of pair i is 1 / 10000^(2i/d): you used 10000^(i/d)")
def _(T, d):
    a = _angles(T, d, torch.arange(0, d // 2) / d)
    pe = torch.zeros(T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(a), torch.cos(a)
    return pe


@sinusoidal_positions.mistake("even dimensions hold sin and odd ones cos: you swapped them")
def _(T, d):
    a = _angles(T, d, torch.arange(0, d, 2) / d)
    pe = torch.zeros(T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.cos(a), torch.sin(a)
    return pe
