"""Judging generated text: likelihood under a model, diversity, repetition.

* :func:`perplexity`: ``exp(-1/N sum_t log p(x_t | x_<t))`` under a language model (low = the
  model finds the text likely; it says nothing about whether the text is interesting);
* :func:`distinct_n` (Li et al. 2016): distinct n-grams / all n-grams, over a set of texts;
* :func:`repetition_rate`: the share of n-grams in a text that repeat an earlier one
  (``rep-n = 1 - unique / total`` within one text), averaged over texts;
* :func:`bleu` (Papineni et al. 2002) and :func:`self_bleu` (Zhu et al. 2018): how much each
  text's n-grams overlap with the others' (high self-BLEU = the samples look alike).
* :func:`verbatim_lengths`: how much of a text a model writes back from its prefix (memorization),
  from the starts :func:`probe_starts` draws.

Texts are strings (split on whitespace) or sequences of tokens (e.g. token ids or characters).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Hashable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from aigc_lib.config import model_device
from aigc_lib.data import load_shakespeare
from aigc_lib.sampling import generate

Tokens = Sequence[Hashable]


def _tokens(text: str | Tokens, tokenize: Callable[[str], Tokens]) -> list:
    return list(tokenize(text)) if isinstance(text, str) else list(text)


def ngrams(tokens: Tokens, n: int) -> list[tuple]:
    """All contiguous n-grams of ``tokens``, in order."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str | Tokens], n: int = 2, *, tokenize: Callable = str.split) -> float:
    """``|distinct n-grams| / |n-grams|`` pooled over all ``texts`` (1.0 = no n-gram repeats).

    A common variant of Li et al.'s (2016) distinct-n, which divides by the number of generated
    *tokens* instead: a text of L tokens has L - n + 1 n-grams, so the two differ by a factor
    (L - n + 1) / L, and only this one is 1.0 exactly when no n-gram repeats.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty list of texts (a single string is not a list)")
    grams = [g for t in texts for g in ngrams(_tokens(t, tokenize), n)]
    if not grams:
        raise ValueError(f"the texts are shorter than n={n} tokens; there are no n-grams to count")
    return len(set(grams)) / len(grams)


def repetition_rate(texts: Sequence[str | Tokens], n: int = 4, *, tokenize: Callable = str.split) -> float:
    """Mean over texts of ``rep-n = 1 - |unique n-grams| / |n-grams|`` within each text.

    This is the sequence-level repetition of Welleck et al. (2020), ``seq-rep-n``.

    0 means no n-gram occurs twice in a text; degenerate loops ("the the the ...") approach 1.
    Texts with fewer than ``n`` tokens are skipped.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty list of texts (a single string is not a list)")
    rates = []
    for t in texts:
        grams = ngrams(_tokens(t, tokenize), n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    if not rates:
        raise ValueError(f"every text is shorter than n={n} tokens")
    return sum(rates) / len(rates)


def bleu(hypothesis: str | Tokens, references: Sequence[str | Tokens], *, max_n: int = 4,
         smooth: float = 0.1, tokenize: Callable = str.split) -> float:
    """Sentence BLEU: ``BP * exp(mean_n log p_n)`` for n = 1..max_n.

    ``p_n`` is the clipped n-gram precision (each hypothesis n-gram counts at most as often as it
    appears in any one reference); a zero count is replaced by ``smooth`` (Chen & Cherry's
    method 1, as Texygen uses). ``BP = min(1, exp(1 - r / c))`` with ``c`` the hypothesis length and
    ``r`` the reference length closest to it.
    """
    hyp = _tokens(hypothesis, tokenize)
    refs = [_tokens(r, tokenize) for r in references]
    if not refs:
        raise ValueError("bleu needs at least one reference")
    if not hyp:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(ngrams(hyp, n))
        total = sum(counts.values())
        if total == 0:  # hypothesis shorter than n: no evidence for this order
            return 0.0
        max_ref = Counter()
        for r in refs:
            for g, c in Counter(ngrams(r, n)).items():
                max_ref[g] = max(max_ref[g], c)
        clipped = sum(min(c, max_ref[g]) for g, c in counts.items())
        log_p += math.log((clipped if clipped > 0 else smooth) / total) / max_n
    c = len(hyp)
    r = min((abs(len(ref) - c), len(ref)) for ref in refs)[1]
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_p)


def self_bleu(texts: Sequence[str | Tokens], *, max_n: int = 4, tokenize: Callable = str.split) -> float:
    """Mean BLEU of each text against all the others (Zhu et al. 2018). 1.0 = identical texts."""
    if isinstance(texts, str) or len(texts) < 2:
        raise ValueError("self_bleu needs a list of at least two texts")
    toks = [_tokens(t, tokenize) for t in texts]
    scores = [bleu(toks[i], toks[:i] + toks[i + 1:], max_n=max_n) for i in range(len(toks))]
    return sum(scores) / len(scores)


@torch.no_grad()
def token_nll(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """``-log p(x_t | x_<t)`` for t = 1..T-1, shape B x (T-1), under the book's GPT or a HF causal LM."""
    ids = torch.as_tensor(ids)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.size(1) < 2:
        raise ValueError(f"ids must be B x T token ids with T >= 2, got shape {tuple(ids.shape)}")
    model.eval()
    out = model(ids)
    logits = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
    logits = logits[:, :-1].float()
    return F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")


def perplexity(model: nn.Module, ids: torch.Tensor, *, prompt_length: int = 1) -> float:
    """``exp`` of the mean negative log-likelihood of the tokens at positions >= ``prompt_length``.

    ``ids`` is B x T (or T); each row must fit the model's context. With ``prompt_length`` set to
    the prompt's length, only the continuation is scored, conditioned on the prompt.
    """
    nll = token_nll(model, ids)
    if not 1 <= prompt_length < nll.size(1) + 1:
        raise ValueError(f"prompt_length must be in [1, {nll.size(1)}] for sequences of length "
                         f"{nll.size(1) + 1}, got {prompt_length}")
    return math.exp(nll[:, prompt_length - 1:].mean().item())


@torch.no_grad()
def verbatim_lengths(model: nn.Module, ids: torch.Tensor, starts: Sequence[int] | torch.Tensor, *,
                     prefix_length: int = 64, n_new: int = 32, batch_size: int = 256) -> torch.Tensor:
    """How many tokens of the true continuation the model writes back verbatim, per prompt.

    For each start ``s``, the model greedily continues ``ids[s : s + prefix_length]`` by ``n_new``
    tokens; the result is the length of the common prefix of that continuation and the text's own
    ``ids[s + prefix_length : s + prefix_length + n_new]`` (0 to ``n_new``). A continuation that
    matches in full makes the text *extractable* from the model with that prefix (the greedy
    "k-extractable" test of Carlini et al. 2021, 2023).
    """
    ids = torch.as_tensor(ids).long()
    starts = torch.as_tensor(starts, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"ids must be one 1-D sequence of token ids, got shape {tuple(ids.shape)}")
    if prefix_length < 1 or n_new < 1:
        raise ValueError("prefix_length and n_new must be >= 1")
    if len(starts) == 0 or int(starts.min()) < 0 or int(starts.max()) + prefix_length + n_new > len(ids):
        raise ValueError(f"every start must leave prefix_length + n_new = {prefix_length + n_new} tokens "
                         f"inside the text of {len(ids)} tokens")
    window = starts[:, None] + torch.arange(prefix_length + n_new)
    device = model_device(model)
    lengths = []
    for rows in ids[window].split(batch_size):
        out = generate(model, rows[:, :prefix_length].to(device), n_new, sliding_window=True).cpu()
        same = (out[:, prefix_length:] == rows[:, prefix_length:]).long()
        lengths.append(same.cumprod(1).sum(1))  # matched tokens before the first difference
    return torch.cat(lengths)


def probe_starts(ids: torch.Tensor, span: int, n_new: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` random starts in a Shakespeare text whose continuation is at least half non-space characters.

    (The poems hold long runs of indenting spaces, which even an untrained model "writes back".)
    """
    space = torch.tensor([c.isspace() for c in load_shakespeare().vocab])
    starts = torch.randperm(len(ids) - span, generator=g)[:20 * n]  # candidates: enough to keep n
    solid = ~space[ids[starts[:, None] + span - n_new + torch.arange(n_new)].long()]
    return starts[solid.sum(1) >= n_new // 2][:n]
