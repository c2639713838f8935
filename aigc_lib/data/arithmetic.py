"""Arithmetic with checkable answers: the reasoning chapter's task, built by rules.

A problem is ``a + b`` or ``a * d`` (``d`` one digit) written in decimal; its *size* is the number
of digits of ``a``. A program knows every answer, so "is this output right?" is a verified fact,
never a model's opinion, and reinforcement learning can use it as its reward.

Two ways to write the answer after the prompt ``"357+68:"``:

* **direct**: ``"#425\\n"``, the digits at once, most significant first. The first digit depends
  on every carry below it, so the model must do all the work inside one forward pass;
* **worked** (a scratchpad, Nye et al. 2021; chain of thought, Wei et al. 2022): one step per
  digit from the least significant up, ``x op y + c = s`` with the carry ``c`` from the step
  below, then the answer::

      7+8+0=15,5+6+1=12,3+0+1=4#425

  Each step needs one digit of each operand and one carry: a fixed amount of work per token,
  whatever the size of the problem (Lee et al. 2023 train small Transformers on such formats).
  For ``a * d`` the steps read ``x*d+c=s``.

:func:`verify` reads the final answer, the digits after the one ``#``, and scores 1 if it is
right and 0 otherwise: no answer, two answers, or anything but digits score 0 and nothing raises.

**An imperfect teacher.** Real demonstrations contain mistakes: annotators slip, and a model that
writes traces for another to imitate is wrong some of the time. :func:`teacher` writes a response
as the rules do, except that with probability ``slip_rate`` it slips once: one step's sum is off by
one and everything after it follows from the slip, so the trace stays self-consistent and its
final answer is wrong. Whether a problem slips, and where, is a hash of the prompt and ``seed``:
the direct and worked teachers slip on the same problems, to the same wrong answers. Supervised
fine-tuning imitates the slips along with the rest; a verified reward does not reward them.

Splits belong to the problems, not to a run: :func:`split_of` hashes the prompt, so a problem
is in ``"train"``, ``"validation"`` or ``"test"`` whatever the seed (and ``AIGC_SEED_OFFSET``),
and sizes above the trained ones (the ``longer`` problems) are never trained on.
"""
from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

from aigc_lib.config import run_seed
from aigc_lib.tokenizers import CharTokenizer

VOCAB = "\n0123456789+*=,#:"  # every character a prompt or a response uses; "\n" ends a response
OPS = ("+", "*")
ANSWER = "#"  # the final answer follows this mark
FORMATS = ("direct", "worked")
SPLITS = ("train", "validation", "test")
_ANSWER = re.compile(r"#(0|[1-9][0-9]*)")  # canonical decimal: no leading zeros


@dataclass(frozen=True)
class Problem:
    """``a op b``: addition of two numbers, or multiplication by one digit ``b``."""
    a: int
    b: int
    op: str = "+"

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.a < 0 or self.b < 0:
            raise ValueError(f"operands are non-negative ints, got {self.a} and {self.b}")
        if self.op == "*" and self.b > 9:
            raise ValueError(f"multiplication is by one digit (b in 0..9), got b={self.b}")
        if self.op == "+" and len(str(self.b)) > len(str(self.a)):
            raise ValueError(f"write the longer number first: {self.b}+{self.a}, not {self.a}+{self.b}")

    @property
    def prompt(self) -> str:
        """What the model reads: ``"357+68:"``."""
        return f"{self.a}{self.op}{self.b}:"

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a * self.b

    @property
    def size(self) -> int:
        """The number of digits of ``a`` (the number of worked steps)."""
        return len(str(self.a))


def steps(problem: Problem) -> list[tuple[int, int, int, int]]:
    """The worked solution's steps ``(x, y, c, s)``, least significant digit first:
    ``s = x op y + c`` and the next carry is ``s // 10`` (the last step keeps all of ``s``)."""
    a = str(problem.a)[::-1]
    b = str(problem.b)[::-1] if problem.op == "+" else None
    out, carry = [], 0
    for i, ch in enumerate(a):
        x = int(ch)
        y = (int(b[i]) if i < len(b) else 0) if b is not None else problem.b
        s = x + y + carry if problem.op == "+" else x * y + carry
        out.append((x, y, carry, s))
        carry = s // 10
    return out


def direct(problem: Problem) -> str:
    """The direct response: ``"#425\\n"``."""
    return f"{ANSWER}{problem.answer}\n"


def worked(problem: Problem) -> str:
    """The worked response: one ``x op y + c = s`` step per digit of ``a``, then ``#answer``."""
    op = problem.op
    text = ",".join(f"{x}{op}{y}+{c}={s}" for x, y, c, s in steps(problem))
    return f"{text}{ANSWER}{problem.answer}\n"


def slipped_steps(problem: Problem, at: int, delta: int) -> list[tuple[int, int, int, int]]:
    """The worked steps with step ``at``'s sum changed by ``delta`` (a slip); later steps take
    their carry from the slipped sum, so the trace stays consistent with its (wrong) answer."""
    a = str(problem.a)[::-1]
    b = str(problem.b)[::-1] if problem.op == "+" else None
    if not 0 <= at < len(a):
        raise ValueError(f"a slip happens at a step 0..{len(a) - 1}, got {at}")
    out, carry = [], 0
    for i, ch in enumerate(a):
        x = int(ch)
        y = (int(b[i]) if i < len(b) else 0) if b is not None else problem.b
        s = (x + y + carry if problem.op == "+" else x * y + carry) + (delta if i == at else 0)
        if s < 0:
            raise ValueError(f"a slip of {delta} at step {at} makes a negative sum")
        out.append((x, y, carry, s))
        carry = s // 10
    return out


def answer_of(steps_: Sequence[tuple[int, int, int, int]]) -> int:
    """The number a worked trace spells: each step's last digit, the last step's whole sum on top."""
    *low, last = steps_
    return int(str(last[3]) + "".join(str(s % 10) for *_, s in reversed(low)))


def _slip(problem: Problem, slip_rate: float, seed: int) -> tuple[int, int] | None:
    """``(step, delta)`` of the teacher's slip on this problem, or ``None``: a hash of prompt and seed."""
    h = zlib.crc32(f"{seed}:{problem.prompt}".encode())
    if (h % 100_000) / 100_000 >= slip_rate:
        return None
    at = (h // 100_000) % problem.size
    s = steps(problem)[at][3]
    delta = -1 if (h // 7) % 2 and s > 0 else 1
    return at, delta


def teacher(problem: Problem, fmt: str, slip_rate: float = 0.0, seed: int = 0) -> str:
    """The response of a teacher that slips on a share ``slip_rate`` of problems (see the module
    docstring); ``slip_rate=0`` is :func:`response`."""
    if not 0.0 <= slip_rate <= 1.0:
        raise ValueError(f"slip_rate is a probability in [0, 1], got {slip_rate}")
    slip = _slip(problem, slip_rate, seed) if slip_rate else None
    if slip is None:
        return response(problem, fmt)
    trace = slipped_steps(problem, *slip)
    answer = answer_of(trace)
    if fmt == "direct":
        return f"{ANSWER}{answer}\n"
    if fmt == "worked":
        text = ",".join(f"{x}{problem.op}{y}+{c}={s}" for x, y, c, s in trace)
        return f"{text}{ANSWER}{answer}\n"
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def response(problem: Problem, fmt: str) -> str:
    """The response in format ``fmt`` (``"direct"`` or ``"worked"``)."""
    if fmt == "direct":
        return direct(problem)
    if fmt == "worked":
        return worked(problem)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def tokenizer() -> CharTokenizer:
    """One token per character of :data:`VOCAB` (17 tokens; ``"\\n"`` is id 0 and ends a response)."""
    return CharTokenizer(VOCAB)


def split_of(problem: Problem) -> str:
    """``"test"`` (1 in 10 problems), ``"validation"`` (1 in 10) or ``"train"``, by a hash of the
    prompt: fixed for a problem whatever the seed."""
    h = zlib.crc32(problem.prompt.encode()) % 10
    return "test" if h == 0 else "validation" if h == 1 else "train"


def random_problem(size: int, op: str = "+", rng: random.Random | None = None) -> Problem:
    """A problem of ``size`` digits: ``a`` has exactly ``size`` digits; for ``+`` ``b`` has 1 to
    ``size`` digits (each length equally likely), for ``*`` it is one digit 2..9."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size is a number of digits >= 1, got {size!r}")
    rng = rng or random.Random()
    lo = 10 ** (size - 1) if size > 1 else 0
    a = rng.randrange(lo, 10 ** size)
    if op == "*":
        return Problem(a, rng.randrange(2, 10), "*")
    digits = rng.randint(1, size)
    b = rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits)
    return Problem(a, b, op)


def problems(n: int, sizes: Iterable[int], split: str | None = "train", op: str = "+",
             seed: int = 0) -> list[Problem]:
    """``n`` distinct problems of the given sizes (sizes in turn) from ``split`` (``None``: any split,
    for sizes never trained on). The seed goes through :func:`aigc_lib.config.run_seed`."""
    sizes = list(sizes)
    if not sizes or n < 1:
        raise ValueError(f"need at least one size and n >= 1, got sizes={sizes}, n={n}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    rng = random.Random(run_seed(seed))
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"found only {len(out)} distinct {split} problems of sizes {sizes}; "
                             "ask for fewer or add larger sizes")
        p = random_problem(sizes[len(out) % len(sizes)], op, rng)
        if p in seen or (split is not None and split_of(p) != split):
            continue
        seen.add(p)
        out.append(p)
    return out


def examples(items: Sequence[Problem], fmt: str, slip_rate: float = 0.0, seed: int = 0
             ) -> tuple[list[str], list[str]]:
    """``(prompts, responses)`` for supervised fine-tuning (pack them with
    :func:`aigc_lib.training.finetune.pack`), written by :func:`teacher`."""
    return [p.prompt for p in items], [teacher(p, fmt, slip_rate, seed) for p in items]


def max_length(items: Iterable[Problem], fmt: str) -> int:
    """Characters of the longest prompt + response: the context a model needs."""
    return max(len(p.prompt) + len(response(p, fmt)) for p in items)


def extract_answer(text: str) -> int | None:
    """The final answer in a model's output: the digits after the one ``#``, up to the end of the
    line. ``None`` when there is no ``#``, more than one, or anything but a number written without
    leading zeros after it."""
    if not isinstance(text, str):
        return None
    line = text.split("\n", 1)[0]
    if line.count(ANSWER) != 1:
        return None
    match = _ANSWER.fullmatch(line[line.index(ANSWER):])
    return int(match.group(1)) if match else None


def verify(text: str, problem: Problem | int) -> float:
    """1.0 if ``text``'s final answer (:func:`extract_answer`) is the problem's answer, else 0.0."""
    answer = problem.answer if isinstance(problem, Problem) else problem
    got = extract_answer(text)
    return float(got is not None and got == answer)
