"""The LLM-architectures chapter's checked exercises: RMSNorm and grouped-query attention."""
import torch
from torch.nn import functional as F

from aigc_lib.exercises.core import exercise


def _rms_norm(x, weight, eps):
    """The package's :class:`~aigc_lib.models.gpt.RMSNorm`, as a function."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@exercise(reference=_rms_norm)
def rms_norm(g):
    """(x of shape (..., d), weight of shape (d,), eps): x / sqrt(mean(x^2) + eps) * weight."""
    yield torch.tensor([[3.0, 4.0]]), torch.ones(2), 0.0       # RMS 3.5355: (0.8485, 1.1314)
    yield torch.tensor([[1.0, 1.0, 1.0, 5.0]]), torch.tensor([1.0, 2.0, 0.5, 1.0]), 1e-6
    yield torch.zeros(1, 3), torch.ones(3), 1e-5                 # eps keeps 0 / 0 away
    yield torch.tensor([[0.5, -0.5]]), torch.ones(2), 1.0       # a large eps: 0.5 / sqrt(1.25)
    for shape in [(2, 5, 8), (3, 16)]:
        yield torch.randn(shape, generator=g) * 3 + 1, torch.randn(shape[-1], generator=g), 1e-6


@rms_norm.mistake("RMSNorm does not subtract the mean: that is LayerNorm (x - mean) / std")
def _(x, weight, eps):
    return weight * (x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps)


@rms_norm.mistake("divide by the root of the *mean* square over the last dimension, not of the sum")
def _(x, weight, eps):
    return weight * x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


@rms_norm.mistake("eps goes inside the square root, added to mean(x^2): sqrt(mean(x^2) + eps)")
def _(x, weight, eps):
    return weight * x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps)


def _grouped_query_attention(q, k, v):
    """Causal attention where query head h reads key/value head h // (H / K)."""
    group = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@exercise(reference=_grouped_query_attention)
def grouped_query_attention(g):
    """(q of shape (B, H, T, d), k and v of shape (B, K, T, d)), K divides H: causal attention, B x H x T x d."""
    for B, H, K, T, d in [(1, 2, 2, 3, 4), (1, 4, 2, 5, 8), (2, 6, 3, 7, 4), (2, 8, 1, 6, 8), (1, 4, 4, 4, 2)]:
        yield (torch.randn(B, H, T, d, generator=g), torch.randn(B, K, T, d, generator=g),
               torch.randn(B, K, T, d, generator=g))


@grouped_query_attention.mistake("query head h shares key/value head h // (H / K) (consecutive heads form a "
                                 "group, repeat_interleave), not h % K (repeat)")
def _(q, k, v):
    group = q.size(1) // k.size(1)
    return F.scaled_dot_product_attention(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), is_causal=True)


@grouped_query_attention.mistake("a language model's attention is causal: position t may not read keys after t")
def _(q, k, v):
    group = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v)


@grouped_query_attention.mistake("scale the scores by 1 / sqrt(d), d the size of one head, not 1 / d")
def _(q, k, v):
    group = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / q.size(-1))
