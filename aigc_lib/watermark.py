"""A statistical watermark for generated text: the green list of Kirchenbauer et al. (2023).

At every step the previous token ``x_{t-1}`` and a secret ``key`` seed a pseudo-random split of
the vocabulary into a *green list* ``G(x_{t-1})`` of ``gamma * |V|`` tokens and a red list. The
generator adds ``delta`` to the logits of the green tokens before sampling,

    z'_i = z_i + delta * [i in G(x_{t-1})],

so generated text holds more green tokens than chance. A detector who knows the key (but not the
model) counts the green tokens ``|s|_G`` among ``T`` scored tokens and runs a one-sided z-test of
"the text was written without the watermark" (each token green with probability ``gamma``):

    z = (|s|_G - gamma T) / sqrt(T gamma (1 - gamma)).

A large z (the paper uses z > 4) means watermarked. Nothing about the model is needed to detect,
and the text itself carries the signal.

The split is a fixed ``V x V`` table (row = previous token), drawn once from the key: for the
book's small vocabularies this is exact and fast; for GPT-2's 50,257 tokens one would hash the
previous token on the fly instead, as the paper does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _check_gamma(gamma: float) -> None:
    if not 0 < gamma < 1:
        raise ValueError(f"gamma (the green share of the vocabulary) must be in (0, 1), got {gamma}")


def green_lists(vocab_size: int, gamma: float = 0.25, key: int = 15485863) -> torch.Tensor:
    """The ``V x V`` boolean table ``green[prev, token]``: row ``prev`` is ``G(prev)``.

    Each row holds exactly ``round(gamma * V)`` green tokens, a random permutation seeded by
    ``key`` and ``prev`` alone, so anyone with the key rebuilds the same table. (The key is a
    secret of the watermark, not a run seed: it must not move with ``AIGC_SEED_OFFSET``.)
    """
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    _check_gamma(gamma)
    n_green = round(gamma * vocab_size)
    if not 1 <= n_green < vocab_size:
        raise ValueError(f"gamma={gamma} gives {n_green} green tokens out of {vocab_size}; "
                         "choose gamma so that at least one token is green and one is red")
    table = torch.zeros(vocab_size, vocab_size, dtype=torch.bool)
    for prev in range(vocab_size):
        g = torch.Generator().manual_seed(key * 1_000_003 + prev)  # seeded by (key, previous token)
        table[prev, torch.randperm(vocab_size, generator=g)[:n_green]] = True
    return table


@dataclass
class WatermarkResult:
    n_green: int  # |s|_G: green tokens among the scored ones
    n_tokens: int  # T: tokens scored (every token after the first)
    z: float  # the z-statistic
    detected: bool  # z > threshold

    @property
    def green_fraction(self) -> float:
        return self.n_green / self.n_tokens


def z_score(n_green: int | torch.Tensor, n_tokens: int | torch.Tensor, gamma: float) -> torch.Tensor | float:
    """``z = (|s|_G - gamma T) / sqrt(T gamma (1 - gamma))``, the one-sided test statistic."""
    _check_gamma(gamma)
    if torch.is_tensor(n_tokens):
        if bool((n_tokens < 1).any()):
            raise ValueError("every text needs at least one scored token (T >= 1)")
        return (n_green - gamma * n_tokens) / torch.sqrt(n_tokens * gamma * (1 - gamma))
    if n_tokens < 1:
        raise ValueError(f"need at least one scored token (T >= 1), got T={n_tokens}")
    if not 0 <= n_green <= n_tokens:
        raise ValueError(f"n_green must be in [0, T={n_tokens}], got {n_green}")
    return (n_green - gamma * n_tokens) / math.sqrt(n_tokens * gamma * (1 - gamma))


class Watermark:
    """The green-list watermark: ``processor`` for :func:`aigc_lib.sampling.generate`, ``detect`` for text.

    ``gamma``: green share of the vocabulary; ``delta``: logit bonus of green tokens (0 = off);
    ``key``: the secret that seeds the lists; ``threshold``: z above which :meth:`detect` says yes.
    """

    def __init__(self, vocab_size: int, gamma: float = 0.25, delta: float = 2.0, key: int = 15485863,
                 threshold: float = 4.0):
        if not delta >= 0:
            raise ValueError(f"delta (the green logits' bonus) must be >= 0, got {delta}")
        self.vocab_size, self.gamma, self.delta, self.key, self.threshold = vocab_size, gamma, delta, key, threshold
        self.green = green_lists(vocab_size, gamma, key)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The logits processor: ``logits + delta * green[previous token]`` (ids B x T, logits B x V)."""
        if logits.size(-1) != self.vocab_size:
            raise ValueError(f"logits have {logits.size(-1)} entries but the watermark was built for a "
                             f"vocabulary of {self.vocab_size}; build it with the model's vocab_size")
        mask = self.green.to(logits.device)[ids[:, -1]]
        return logits + self.delta * mask.to(logits.dtype)

    processor = __call__

    def green_counts(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row of ``ids`` (B x T or T): green tokens among tokens 2..T, and T - 1 (tokens scored)."""
        ids = torch.as_tensor(ids)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.size(1) < 2:
            raise ValueError(f"need token ids of shape B x T with T >= 2 (the first token only seeds "
                             f"the second's list), got shape {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size - 1}]; use the model's tokenizer")
        hits = self.green[ids[:, :-1], ids[:, 1:]]
        return hits.sum(1), torch.full((ids.size(0),), ids.size(1) - 1)

    def z_scores(self, ids: torch.Tensor) -> torch.Tensor:
        """The z-statistic of every row of ``ids``."""
        n_green, n = self.green_counts(ids)
        return z_score(n_green.double(), n.double(), self.gamma).float()

    def detect(self, ids: torch.Tensor) -> WatermarkResult:
        """Test one text (a 1-D sequence of token ids)."""
        n_green, n = self.green_counts(torch.as_tensor(ids).reshape(1, -1))
        z = z_score(int(n_green), int(n), self.gamma)
        return WatermarkResult(int(n_green), int(n), float(z), bool(z > self.threshold))


def random_edits(ids: torch.Tensor, fraction: float, vocab_size: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace a ``fraction`` of the tokens of every row (chosen at random) by random tokens.

    The attack a paraphrase is roughly like: each edited token loses its own colour and re-seeds
    the next token's list, so one edit can turn up to two green tokens into coin flips.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    ids = torch.as_tensor(ids).clone()
    B, T = ids.shape
    n_edit = round(fraction * T)
    for b in range(B):
        where = torch.randperm(T, generator=generator)[:n_edit]
        ids[b, where] = torch.randint(vocab_size, (n_edit,), generator=generator)
    return ids
