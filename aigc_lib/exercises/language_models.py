"""The language-models chapter's checked exercises: BPE's pair choice and one merge."""
from collections import Counter

from aigc_lib.exercises.core import exercise
from aigc_lib.tokenizers import _merge


def _most_frequent_pair(ids: list[int]) -> tuple[int, int]:
    """The adjacent pair that occurs most often in ``ids``, ties to the smaller ids: the pair
    ``BPETokenizer.train`` merges first in a text of one word (``tests/test_exercises.py``)."""
    counts = Counter(zip(ids, ids[1:]))
    return max(counts, key=lambda p: (counts[p], -p[0], -p[1]))


@exercise(reference=_most_frequent_pair)
def most_frequent_pair(g):
    """ids (a list of ints, at least two)."""
    yield [1, 2]
    yield [5, 3, 5, 3, 1, 2, 1, 2]                 # a tie between (5, 3) and (1, 2)
    yield [7, 7, 7, 1, 2]                          # "aaa" holds the pair (a, a) twice
    yield [104, 101, 108, 108, 111, 32, 104, 101, 108, 112]      # "hello help"
    yield [ord(c) for c in "banana bandana"]


@most_frequent_pair.mistake("on a tie BPE takes the pair with the smaller ids (the package's rule); "
                            "Counter.most_common breaks ties by first occurrence")
def _(ids):
    return Counter(zip(ids, ids[1:])).most_common(1)[0][0]


@most_frequent_pair.mistake("BPE merges the most frequent *adjacent pair*, not the two most frequent ids")
def _(ids):
    counts = Counter(ids)
    a, b = sorted(counts, key=lambda i: (-counts[i], i))[:2]
    return (a, b)


def _merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Every non-overlapping occurrence of ``pair``, left to right, replaced by ``new_id``."""
    return _merge(ids, pair, new_id)


@exercise(reference=_merge_pair)
def merge(g):
    """(ids, pair, new_id)."""
    yield [], (1, 2), 256
    yield [1], (1, 2), 256
    yield [1, 2], (1, 2), 256
    yield [3, 1, 2, 4, 1, 2], (1, 2), 300          # the pair at the end
    yield [7, 7, 7], (7, 7), 256                   # overlapping: the left pair wins
    yield [7, 7, 7, 7, 5], (7, 7), 257
    yield [1, 3, 1, 3, 3, 1], (3, 1), 260


@merge.mistake("after a merge skip both ids of the pair: in [a, a, a] the pair (a, a) occurs once "
               "without overlap, giving [X, a]")
def _(ids, pair, new_id):
    out = [new_id if (a, b) == pair else a for a, b in zip(ids, ids[1:])]
    return out + ids[-1:] if ids else []


@merge.mistake("the loop stops one id early: the last id is lost when it is not part of a merge")
def _(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@merge.mistake("merge left to right: in [a, a, a] the first two ids merge, giving [X, a], not [a, X]")
def _(ids, pair, new_id):
    return _merge(ids[::-1], pair[::-1], new_id)[::-1]
