"""The background chapter's checked exercises: add-k smoothing, perplexity from log-probabilities."""
import math

import torch

from aigc_lib.exercises.core import exercise


def _add_k(counts: torch.Tensor, k: float) -> torch.Tensor:
    """P(c | h) = (C(h c) + k) / (C(h) + k V) for the counts C(h c) of the V characters after h.

    With k = 1 and the whole text as "context" it is the n-gram model's add-one unigram
    (``CharNGram.fit``'s ``unigram``; ``tests/test_exercises.py`` checks that).
    """
    V = counts.size(-1)
    return (counts + k) / (counts.sum(-1, keepdim=True) + k * V)


def _perplexity(log_probs: torch.Tensor) -> float:
    """exp(-1/N sum_i log p(x_i)): ``CharNGram.perplexity`` from its ``log_probs``."""
    return math.exp(-float(log_probs.mean()))


@exercise(reference=_add_k)
def add_k(g):
    """(counts, k): counts of shape (V,) or (contexts, V), some of them zero."""
    yield torch.zeros(4), 1.0                      # an unseen context: uniform
    yield torch.tensor([3.0, 0.0, 1.0, 0.0, 0.0]), 0.5
    yield torch.tensor([[2.0, 0.0, 1.0], [0.0, 5.0, 0.0]]), 0.1
    for V in (6, 30):
        counts = torch.randint(0, 4, (3, V), generator=g).float()
        yield counts, 0.01


@add_k.mistake("the probabilities must sum to one: add k V to the denominator, not k")
def _(counts, k):
    return (counts + k) / (counts.sum(-1, keepdim=True) + k)


@add_k.mistake("the denominator is C(h) + k V: you added V, which is add-one's, whatever k is")
def _(counts, k):
    return (counts + k) / (counts.sum(-1, keepdim=True) + counts.size(-1))


@add_k.mistake("add k to every character's count, the unseen ones (count 0) too: that is the point")
def _(counts, k):
    seen = (counts > 0).float()
    return (counts + k * seen) / (counts.sum(-1, keepdim=True) + k * seen.sum(-1, keepdim=True))


@exercise(reference=_perplexity)
def perplexity(g):
    """log p(x_i) of N characters (natural logs)."""
    yield torch.log(torch.full((5,), 0.25))      # four equally likely characters: perplexity 4
    yield torch.log(torch.tensor([0.5, 0.1, 0.9]))
    for n in (10, 200):
        yield torch.log(torch.rand(n, generator=g).clamp_min(0.01))


@perplexity.mistake("perplexity is exp of the *average* negative log-likelihood: you summed over characters")
def _(log_probs):
    return math.exp(-float(log_probs.sum()))


@perplexity.mistake("the log-probabilities are negative: perplexity is exp(-mean log p), you dropped the minus")
def _(log_probs):
    return math.exp(float(log_probs.mean()))


@perplexity.mistake("the log-probabilities are natural logs: use exp, not 2 ** (bits go with log2)")
def _(log_probs):
    return 2 ** -float(log_probs.mean())
