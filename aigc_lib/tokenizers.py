"""Tokenizers: text -> integer ids -> text.

Two tokenizers, both small enough to read in one sitting:

* :class:`CharTokenizer`: one id per character of a fixed vocabulary (the Shakespeare GPT of
  the pretraining chapter uses the corpus's 84 characters);
* :class:`BPETokenizer`: GPT-2's byte-level byte-pair encoding (Sennrich et al. 2016; Radford et
  al. 2019). Text is split into "pre-tokens" by GPT-2's regular expression, each pre-token is
  turned into its UTF-8 bytes (ids 0-255), and learned merges fuse frequent adjacent pairs into new
  ids 256, 257, ... Because every string is a sequence of bytes, any Unicode text round-trips:
  ``decode(encode(s)) == s``.

Given the same merges, :class:`BPETokenizer` encodes exactly like Hugging Face ``tokenizers``
(``tests/test_tokenizers.py`` checks it on held-out text); :meth:`BPETokenizer.hf_vocab_and_merges`
exports the merges in the format that library reads.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

import regex

# GPT-2's pre-tokenizer: contractions, optional-space + letters, optional-space + digits,
# optional-space + punctuation, whitespace not followed by a non-space, other whitespace.
# Merges never cross these boundaries, so " the" and "the," stay separate words.
GPT2_SPLIT_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
_SPLIT = regex.compile(GPT2_SPLIT_PATTERN)


class CharTokenizer:
    """One id per character: ``vocab[i]`` has id ``i``.

    >>> tok = CharTokenizer("abc ")
    >>> tok.encode("a cab")
    [0, 3, 2, 0, 1]
    """

    def __init__(self, vocab: str | Iterable[str]):
        chars = list(vocab)
        if not chars:
            raise ValueError("CharTokenizer needs a non-empty vocabulary, e.g. load_shakespeare().vocab")
        if any(len(c) != 1 for c in chars):
            raise ValueError("a CharTokenizer vocabulary is a string (or a list of single characters)")
        if len(set(chars)) != len(chars):
            dup = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"the vocabulary repeats characters {dup!r}; pass each character once")
        self.vocab = "".join(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(self.stoi))
            raise ValueError(
                f"characters {unknown!r} are not in this tokenizer's {self.vocab_size}-character "
                "vocabulary; remove or replace them (e.g. with text.translate), or build the "
                "tokenizer from a vocabulary that contains them") from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside [0, {self.vocab_size}); were they made by "
                             "another tokenizer?")
        return "".join(self.vocab[i] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable Unicode characters.

    Printable ASCII and Latin-1 bytes map to themselves; the other 68 (control characters, space)
    are shifted to code points 256+. Hugging Face's ``ByteLevel`` components use the same map, so
    the space byte appears as ``Ġ`` and the newline as ``Ċ`` in GPT-2's vocabulary.
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def pretokenize(text: str) -> list[str]:
    """Split text with GPT-2's pattern; ``"".join(pretokenize(s)) == s`` for every string."""
    return _SPLIT.findall(text)


def _merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by ``new_id``."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level BPE with GPT-2's pre-tokenization.

    ``merges[k] = (a, b)`` says: the pair of ids ``(a, b)`` becomes id ``256 + k``. Encoding a
    pre-token repeatedly applies the earliest-learned merge that occurs in it, until none does.
    """

    def __init__(self, merges: Sequence[tuple[int, int]] = ()):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.ranks: dict[tuple[int, int], int] = {}
        self.token_bytes: list[bytes] = [bytes([b]) for b in range(256)]
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + k and 0 <= b < 256 + k):
                raise ValueError(f"merge {k} = {(a, b)} uses an id that does not exist yet "
                                 f"(ids so far: 0..{256 + k - 1})")
            if (a, b) in self.ranks:
                raise ValueError(f"merge {k} = {(a, b)} repeats merge {self.ranks[(a, b)]}")
            self.ranks[(a, b)] = k
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        self._cache: dict[str, list[int]] = {}

    # ----------------------------------------------------------------- training
    @classmethod
    def train(cls, text: str, vocab_size: int, *, progress: bool = False) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text``.

        Each step counts adjacent id pairs inside every pre-token (weighted by how often the
        pre-token occurs), fuses the most frequent pair into a new id, and updates the counts of
        only the words that contained it. Ties go to the pair with the smaller ids. Training stops
        early (with fewer merges) when no pair occurs twice: a merge must save at least one token.
        """
        if not isinstance(vocab_size, int) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an int >= 256 (the 256 byte values), got {vocab_size!r}")
        if vocab_size > 2**20:
            raise ValueError(f"vocab_size={vocab_size} is unreasonably large for BPE (GPT-2 uses 50,257); "
                             "pick at most 1,048,576")
        word_counts = Counter(pretokenize(text))
        words = [list(w.encode("utf-8")) for w in word_counts]
        counts = list(word_counts.values())
        pair_counts: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = {}
        for w, (ids, c) in enumerate(zip(words, counts)):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += c
                where.setdefault(pair, set()).add(w)

        merges: list[tuple[int, int]] = []
        steps = range(vocab_size - 256)
        if progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc="BPE merges", mininterval=1.0)
        for k in steps:
            if not pair_counts:
                break
            pair = max(pair_counts, key=lambda p: (pair_counts[p], -p[0], -p[1]))
            if pair_counts[pair] < 2:
                break
            new_id = 256 + k
            merges.append(pair)
            for w in where.pop(pair, ()):
                old = words[w]
                new = _merge(old, pair, new_id)
                c = counts[w]
                for p in zip(old, old[1:]):  # remove the word's old pairs ...
                    pair_counts[p] -= c
                    if pair_counts[p] <= 0:
                        del pair_counts[p]
                for p in zip(new, new[1:]):  # ... and add its new ones
                    pair_counts[p] += c
                    where.setdefault(p, set()).add(w)
                words[w] = new
            pair_counts.pop(pair, None)
        return cls(merges)

    # ---------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges)

    def truncated(self, vocab_size: int) -> "BPETokenizer":
        """The tokenizer with only the first ``vocab_size - 256`` merges.

        BPE training is greedy, so this equals training with the smaller ``vocab_size`` directly.
        """
        if not 256 <= vocab_size <= self.vocab_size:
            raise ValueError(f"vocab_size must be in [256, {self.vocab_size}], got {vocab_size}")
        return BPETokenizer(self.merges[: vocab_size - 256])

    def _encode_word(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        ids = list(word.encode("utf-8"))
        while len(ids) >= 2:
            # the earliest-learned merge present in the word
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = _merge(ids, pair, 256 + self.ranks[pair])
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}; decode bytes first")
        return [i for word in pretokenize(text) for i in self._encode_word(word)]

    def decode(self, ids: Iterable[int]) -> str:
        """Concatenate the tokens' bytes and decode them as UTF-8.

        A slice of ids can cut a multi-byte character in half; such bytes become U+FFFD (the
        replacement character) instead of raising, as in GPT-2.
        """
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside [0, {self.vocab_size}); were they made by "
                             "another tokenizer?")
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_str(self, i: int) -> str:
        """A readable form of token ``i`` (its bytes as text; invalid UTF-8 shown escaped)."""
        return self.token_bytes[i].decode("utf-8", errors="backslashreplace")

    # ----------------------------------------------------------- interop
    def hf_vocab_and_merges(self) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """Vocabulary and merges in GPT-2's byte-level string form, for ``tokenizers.models.BPE``."""
        b2u = bytes_to_unicode()

        def as_str(i: int) -> str:
            return "".join(b2u[b] for b in self.token_bytes[i])

        vocab = {as_str(i): i for i in range(self.vocab_size)}
        merges = [(as_str(a), as_str(b)) for a, b in self.merges]
        return vocab, merges

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"
