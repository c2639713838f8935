"""A character n-gram language model with Witten-Bell interpolated smoothing.

An order-n model predicts the next character c from the previous n-1 characters h:

    P(c | h) = (C(h c) + N1(h) * P(c | h')) / (C(h) + N1(h)),

where C counts occurrences in the training text, N1(h) is the number of *distinct* characters
seen after h, and h' is h without its oldest character (Witten & Bell 1991; Chen & Goodman 1999).
The recursion ends in a unigram model with add-one smoothing, so every character of the
vocabulary keeps a non-zero probability and each conditional distribution sums to one.
Unseen contexts (C(h) = 0) simply fall back to the shorter context.

Counting is vectorised with NumPy: an m-gram over a vocabulary of size V is the integer
sum_j x_{i-j} V^j, so counting is ``np.unique`` and lookup is ``np.searchsorted``.
"""
from __future__ import annotations

import math

import numpy as np
import torch


class CharNGram:
    """Order-n character language model (n-1 characters of context)."""

    def __init__(self, order: int, vocab: str):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1 (1 = unigram), got {order!r}")
        if len(set(vocab)) != len(vocab) or not vocab:
            raise ValueError("vocab must be a non-empty string of distinct characters")
        if len(vocab) ** order >= 2**62:
            raise ValueError(f"order {order} is too large for a vocabulary of {len(vocab)} characters")
        self.order, self.vocab = order, vocab
        self.V = len(vocab)
        self.stoi = {ch: i for i, ch in enumerate(vocab)}
        self.tables: list[dict[str, np.ndarray]] | None = None

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self.stoi[ch] for ch in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the model's vocabulary; "
                             "build the vocabulary from all the text you will score") from exc

    def _grams(self, x: np.ndarray, m: int) -> np.ndarray:
        """Codes of all m-grams of x (x_i ... x_{i+m-1}) as integers in base V."""
        codes = np.zeros(len(x) - m + 1, dtype=np.int64)
        for j in range(m):
            codes = codes * self.V + x[j:len(x) - m + 1 + j]
        return codes

    def fit(self, text: str) -> "CharNGram":
        """Count every m-gram, m = 1..order, of ``text``."""
        x = self.encode(text)
        if len(x) < self.order:
            raise ValueError(f"need at least {self.order} characters of training text, got {len(x)}")
        self.unigram = (np.bincount(x, minlength=self.V) + 1.0) / (len(x) + self.V)
        self.tables = []
        for m in range(2, self.order + 1):
            grams, counts = np.unique(self._grams(x, m), return_counts=True)
            ctx, inverse = np.unique(grams // self.V, return_inverse=True)
            self.tables.append({
                "grams": grams, "counts": counts.astype(np.float64), "ctx": ctx,
                "ctx_counts": np.bincount(inverse, weights=counts).astype(np.float64),
                "ctx_types": np.bincount(inverse).astype(np.float64),  # N1(h)
            })
        return self

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(table, keys).clip(max=len(table) - 1)
        return np.where(table[idx] == keys, values[idx], 0.0)

    def _prob(self, ctx_codes: list[np.ndarray], c: np.ndarray) -> np.ndarray:
        """P(c | context) for aligned arrays; ctx_codes[m-2] encodes the last m-1 context chars."""
        p = self.unigram[c]
        for t, h in zip(self.tables, ctx_codes):
            n_hc = self._lookup(h * self.V + c, t["grams"], t["counts"])
            n_h = self._lookup(h, t["ctx"], t["ctx_counts"])
            types = self._lookup(h, t["ctx"], t["ctx_types"])
            seen = n_h > 0
            p = np.where(seen, (n_hc + types * p) / np.where(seen, n_h + types, 1.0), p)
        return p

    def _check_fitted(self) -> None:
        if self.tables is None:
            raise RuntimeError("call fit(text) before using the model")

    def next_char_probs(self, context: str) -> torch.Tensor:
        """The distribution P(. | context) over the vocabulary (a tensor of V probabilities)."""
        self._check_fitted()
        h = self.encode(context[-(self.order - 1):] if self.order > 1 else "")
        c = np.arange(self.V)
        ctx_codes = []
        for m in range(2, self.order + 1):
            k = m - 1  # context length used by the m-gram table
            code = 0
            if len(h) >= k:
                for v in h[len(h) - k:]:
                    code = code * self.V + int(v)
            else:
                code = -1  # too little context: matches nothing, falls back to shorter orders
            ctx_codes.append(np.full(self.V, code, dtype=np.int64))
        return torch.from_numpy(self._prob(ctx_codes, c))

    def log_probs(self, text: str) -> np.ndarray:
        """log P(x_i | previous n-1 characters) for every position i >= order - 1 of ``text``."""
        self._check_fitted()
        x = self.encode(text)
        if len(x) < self.order:
            raise ValueError(f"need at least {self.order} characters to score, got {len(x)}")
        start = self.order - 1
        c = x[start:]
        ctx_codes = [self._grams(x[start - (m - 1):len(x) - 1], m - 1) for m in range(2, self.order + 1)]
        return np.log(self._prob(ctx_codes, c))

    def cross_entropy(self, text: str) -> float:
        """Average negative log-likelihood in nats per character."""
        return float(-self.log_probs(text).mean())

    def perplexity(self, text: str) -> float:
        """exp(cross-entropy): the effective number of equally likely next characters."""
        return math.exp(self.cross_entropy(text))

    def sample(self, prompt: str, n_chars: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> str:
        """Continue ``prompt`` by ``n_chars`` characters drawn one at a time."""
        if n_chars < 0 or temperature <= 0:
            raise ValueError("n_chars must be >= 0 and temperature > 0")
        out = prompt
        for _ in range(n_chars):
            p = self.next_char_probs(out)
            if temperature != 1.0:
                p = p.pow(1.0 / temperature)
            out += self.vocab[int(torch.multinomial(p / p.sum(), 1, generator=generator))]
        return out
