"""Captions for MNIST digits, written by rules so that every word can be checked.

A caption names the digit in one of several *families* and may add *attributes* measured from
the image itself, so a generated image can be checked against the words that asked for it:

* ``name``: the digit as a word or a numeral ("seven", "7", "the digit seven");
* ``ordinal``: a relation to a neighbour ("the digit after six", "the number before eight"),
  every noun with every direction, so that only "after" or "before" tells the digit;
* ``chinese``: the Chinese numeral (七);
* ``attribute``: the digit with one or two measured attributes ("a thick, left-leaning seven");
* ``arithmetic``: a sum or a difference ("three plus four"): never used in training, to show
  what a model does with a family it never saw.

Attributes (:func:`measure`): stroke *thickness* from the ink mass (the sum of the pixels),
*slant* from the image moments (how the column of the ink moves with its row), *size* from the
area of the bounding box. Each is judged against the digit's own class (a thick one has more ink
than two thirds of the training digits of its class), so "thick" means the same for a 1 and an 8.

Held out from training, for measuring generalisation: some templates within the seen families
(:data:`TEMPLATES` lists them under ``"held-out"``: seen words in new combinations, in the frame of
a seen template, e.g. "a number before eight" where training said "the number before eight") and
some attribute-digit combinations (:data:`HELD_OUT_COMBOS`: "a thick seven" is never a training
caption, although thick digits and sevens are). :func:`parse_caption` recovers the digit and the
attributes from any caption the rules write (the round trip is tested), and :class:`WordTokenizer`
turns captions into token ids; the empty prompt is the unconditional input.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CHINESE = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九")
ATTRIBUTES = {"thickness": ("thin", "thick"), "slant": ("left-leaning", "right-leaning"),
              "size": ("small", "large")}
ATTRIBUTE_WORDS = {w: (name, i) for name, pair in ATTRIBUTES.items() for i, w in enumerate(pair)}
FAMILIES = ("name", "ordinal", "chinese", "attribute", "arithmetic")
TRAINED_FAMILIES = ("name", "ordinal", "chinese", "attribute")

# {w}: the digit as a word, {n}: as a numeral, {zh}: Chinese, {prev}/{next}: its neighbours' words
TEMPLATES = {
    "name": {"seen": ("{w}", "{n}", "the digit {w}", "a {w}"),
             "held-out": ("the number {w}", "the digit {n}")},
    # every noun with every direction, so only "after"/"before" tells the digit (no shortcut)
    "ordinal": {"seen": ("the digit after {prev}", "the number after {prev}",
                         "the digit before {next}", "the number before {next}"),
                "held-out": ("a digit after {prev}", "a number after {prev}", "a digit before {next}",
                             "a number before {next}")},
    "chinese": {"seen": ("{zh}",), "held-out": ("the digit {zh}", "a {zh}")},
    "attribute": {"seen": ("a {adj} {w}",), "held-out": ("a {adj} {w}",)},
    "arithmetic": {"seen": (), "held-out": ("{a} plus {b}", "{a} minus {b}")},
}
# attribute word -> digits never described with it in training
HELD_OUT_COMBOS = {"thick": (7, 2), "thin": (3, 8), "left-leaning": (4, 0), "right-leaning": (1, 6),
                   "small": (5, 9), "large": (0, 3)}


# ----------------------------------------------------------------------------- measured attributes
def measure(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ink mass, slant and bounding-box area of each image of ``x`` (N x 1 x 28 x 28, in [0, 1]).

    ``ink = sum_ij x_ij``; ``slant = -cov(col, row) / var(row)`` under the ink distribution (the
    shear of the digit: > 0 when its top lies to the right of its bottom); ``area`` = height x
    width of the box around the pixels above 0.3.
    """
    if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"x must be N x 1 x 28 x 28 images in [0, 1], got shape {tuple(x.shape)}")
    p = x[:, 0].clamp(0, 1).double()
    ink = p.sum((1, 2))
    w = p / ink.clamp_min(1e-8)[:, None, None]
    idx = torch.arange(28, dtype=torch.float64)
    row, col = w.sum(2), w.sum(1)                      # marginals over rows and columns
    mr, mc = (row * idx).sum(1), (col * idx).sum(1)
    var_r = (row * (idx - mr[:, None]) ** 2).sum(1)
    cov = (w * (idx[None, :, None] - mr[:, None, None]) * (idx[None, None, :] - mc[:, None, None])).sum((1, 2))
    slant = -cov / var_r.clamp_min(1e-8)
    on = p > 0.3
    rows, cols = on.any(2), on.any(1)
    height = (27 - rows.flip(1).float().argmax(1)) - rows.float().argmax(1) + 1
    width = (27 - cols.flip(1).float().argmax(1)) - cols.float().argmax(1) + 1
    area = torch.where(on.flatten(1).any(1), height * width, torch.zeros_like(height))
    return {"thickness": ink.float(), "slant": slant.float(), "size": area.float()}


@dataclass
class AttributeThresholds:
    """Per digit class: the lower and upper tertile of each measurement, and the median."""

    low: dict[str, torch.Tensor]     # name -> 10 values
    high: dict[str, torch.Tensor]
    median: dict[str, torch.Tensor]

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor) -> "AttributeThresholds":
        m = measure(x)
        q = lambda v, p: torch.stack([v[y == d].quantile(p) for d in range(10)])
        return cls({k: q(v, 1 / 3) for k, v in m.items()}, {k: q(v, 2 / 3) for k, v in m.items()},
                   {k: q(v, 0.5) for k, v in m.items()})

    def label(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image and attribute: 0 (first word, e.g. thin), 1 (second, thick) or -1 (neither)."""
        out = {}
        for k, v in measure(x).items():
            lab = torch.full_like(y, -1)
            lab[v < self.low[k][y]] = 0
            lab[v > self.high[k][y]] = 1
            out[k] = lab
        return out

    def agrees(self, x: torch.Tensor, digit: torch.Tensor, attribute: str, value: int) -> torch.Tensor:
        """Whether each image lies on the asked side of its class median (thick: above it)."""
        v = measure(x)[attribute]
        above = v > self.median[attribute][digit]
        return above if value == 1 else ~above


# ----------------------------------------------------------------------------- writing captions
def _fill(template: str, d: int, adj: str = "", a: int = 0, b: int = 0) -> str:
    return template.format(w=WORDS[d], n=str(d), zh=CHINESE[d], prev=WORDS[(d - 1) % 10],
                           next=WORDS[(d + 1) % 10], adj=adj, a=WORDS[a], b=WORDS[b])


def _usable(template: str, d: int) -> bool:
    return not ("{prev}" in template and d == 0) and not ("{next}" in template and d == 9)


def held_out_combo(word: str, d: int) -> bool:
    return d in HELD_OUT_COMBOS[word]


def caption(d: int, family: str, split: str = "seen", attrs: dict[str, int] | None = None,
            g: torch.Generator | None = None) -> str:
    """One caption of digit ``d`` in ``family`` from the ``split`` ("seen" or "held-out") templates.

    ``attrs`` (attribute -> 0/1/-1, from :meth:`AttributeThresholds.label`) are what the image
    shows; the attribute family names one or two of them, and only combinations of its ``split``.
    Returns a plain "a {w}" where the image has no usable attribute, and raises ``ValueError`` for
    a family or split that has no template for ``d``.
    """
    if family not in FAMILIES or split not in ("seen", "held-out"):
        raise ValueError(f"family must be one of {FAMILIES} and split 'seen' or 'held-out', got {family!r}, {split!r}")
    pick = lambda n: int(torch.randint(n, (1,), generator=g))
    if family == "arithmetic":
        if pick(2) == 0:
            a = pick(d + 1)
            return _fill(TEMPLATES[family]["held-out"][0], d, a=a, b=d - a)
        b = pick(10 - d)
        return _fill(TEMPLATES[family]["held-out"][1], d, a=d + b, b=b)
    if family == "attribute":
        words = [ATTRIBUTES[k][v] for k, v in (attrs or {}).items() if v >= 0]
        words = [w for w in words if held_out_combo(w, d) == (split == "held-out")]
        if not words and split == "held-out":
            raise ValueError(f"the image's attributes make no held-out combination with the digit {d}")
        if not words:
            return _fill("a {w}", d)
        words = [words[i] for i in sorted(torch.randperm(len(words), generator=g)[:1 + pick(2)].tolist())]
        return _fill("a {adj} {w}", d, adj=", ".join(words))
    templates = [t for t in TEMPLATES[family][split] if _usable(t, d)]
    if not templates:
        raise ValueError(f"no {split} template of the {family} family describes the digit {d}")
    return _fill(templates[pick(len(templates))], d)


def training_captions(y: torch.Tensor, attrs: dict[str, torch.Tensor], g: torch.Generator,
                      families: tuple[str, ...] = TRAINED_FAMILIES) -> list[str]:
    """One random seen caption per image: a random family of ``families``, then a random template."""
    out = []
    fam = torch.randint(len(families), (len(y),), generator=g).tolist()
    for i, d in enumerate(y.tolist()):
        family = families[fam[i]]
        out.append(caption(d, family, "seen", {k: int(v[i]) for k, v in attrs.items()}, g))
    return out


def prompts(family: str, split: str, n: int, g: torch.Generator) -> list[tuple[str, int, dict]]:
    """``n`` evaluation prompts ``(caption, digit, attributes)``, the digits 0-9 in turn.

    Attribute prompts name one attribute each, from the seen or the held-out combinations.
    """
    out = []
    for i in range(n):
        d = i % 10
        if family == "attribute":
            choices = [w for w in ATTRIBUTE_WORDS if held_out_combo(w, d) == (split == "held-out")]
            word = choices[int(torch.randint(len(choices), (1,), generator=g))]
            name, value = ATTRIBUTE_WORDS[word]
            out.append((_fill("a {adj} {w}", d, adj=word), d, {name: value}))
        else:
            text = caption(d, family, split, g=g)
            out.append((text, parse_caption(text)["digit"], {}))
    return out


def ascii_label(text: str) -> str:
    """The caption for a figure label: each Chinese numeral written as <Chinese d> (plot fonts
    often lack CJK glyphs)."""
    for d, c in enumerate(CHINESE):
        text = text.replace(c, f"<Chinese {d}>")
    return text


# ----------------------------------------------------------------------------- reading them back
def parse_caption(text: str) -> dict:
    """The digit, the attributes and the family a rule caption states.

    ``{"digit": 7, "attributes": {"thickness": 1, "slant": 0}, "family": "attribute"}`` for
    "a thick, left-leaning seven". Raises ``ValueError`` for text the rules do not write.
    """
    tokens = WordTokenizer.split(text)
    numbers = {**{w: i for i, w in enumerate(WORDS)}, **{c: i for i, c in enumerate(CHINESE)},
               **{str(i): i for i in range(10)}}
    attributes = {ATTRIBUTE_WORDS[t][0]: ATTRIBUTE_WORDS[t][1] for t in tokens if t in ATTRIBUTE_WORDS}
    rest = [t for t in tokens if t not in ATTRIBUTE_WORDS and t not in ("a", "the", "digit", "number", ",")]
    if len(rest) == 3 and rest[1] in ("plus", "minus") and rest[0] in numbers and rest[2] in numbers:
        a, b = numbers[rest[0]], numbers[rest[2]]
        d = a + b if rest[1] == "plus" else a - b
        if 0 <= d <= 9:
            return {"digit": d, "attributes": attributes, "family": "arithmetic"}
    if len(rest) == 2 and rest[0] in ("after", "before") and rest[1] in numbers:
        d = numbers[rest[1]] + (1 if rest[0] == "after" else -1)
        if 0 <= d <= 9:
            return {"digit": d, "attributes": attributes, "family": "ordinal"}
    if len(rest) == 1 and rest[0] in numbers:
        family = "attribute" if attributes else "chinese" if rest[0] in CHINESE else "name"
        return {"digit": numbers[rest[0]], "attributes": attributes, "family": family}
    raise ValueError(f"not a caption the rules write: {text!r}")


# ----------------------------------------------------------------------------- tokens
class WordTokenizer:
    """Words (and single Chinese characters, and commas) to ids: ``[BOS] w_1 .. w_n [EOS] [PAD]..``.

    The vocabulary is every word the caption rules can write, so no caption is out of vocabulary;
    a word outside it or a prompt longer than ``max_len - 2`` words raises ``ValueError``. The
    empty prompt ``""`` encodes to ``[BOS] [EOS]``: the unconditional input of guidance.
    """

    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self, max_len: int = 10):
        if max_len < 3:
            raise ValueError(f"max_len must leave room for [BOS], a word and [EOS] (>= 3), got {max_len}")
        words = [*WORDS, *CHINESE, *(str(i) for i in range(10)), *ATTRIBUTE_WORDS, ",", "a", "the",
                 "digit", "number", "after", "before", "plus", "minus"]
        self.itos = [*self.SPECIALS, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = max_len

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @staticmethod
    def split(text: str) -> list[str]:
        """Lower-case words; a comma and each Chinese character are tokens of their own."""
        text = re.sub(r"([,\u4e00-\u9fff\u96f6])", r" \1 ", text.lower())
        return text.split()

    def encode(self, text: str) -> torch.Tensor:
        words = self.split(text)
        unknown = [w for w in words if w not in self.stoi]
        if unknown:
            raise ValueError(f"the tokenizer cannot encode {unknown} in {text!r}: it knows only the "
                             f"{self.vocab_size - 3} words of the caption rules (e.g. 'seven', '7', '七', 'thick')")
        if len(words) > self.max_len - 2:
            raise ValueError(f"the prompt {text!r} has {len(words)} tokens; at most {self.max_len - 2} fit "
                             f"(max_len {self.max_len} with [BOS] and [EOS]): shorten it")
        ids = [self.BOS, *(self.stoi[w] for w in words), self.EOS]
        return torch.tensor(ids + [self.PAD] * (self.max_len - len(ids)), dtype=torch.long)

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        """``B x max_len`` ids for a list of prompts (``max_len`` ids for one string)."""
        if isinstance(texts, str):
            return self.encode(texts)
        return torch.stack([self.encode(t) for t in texts])

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [self.itos[i] for i in ids.tolist() if i != self.PAD]
