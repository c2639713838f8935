"""Checked exercises: the reader writes a function, :func:`check` runs it against the package's.

An exercise is a reference implementation, the inputs it is checked on (seeded random tensors,
edge cases, several shapes) and its catalogue of *mistakes*: wrong implementations that people
actually write, each with the hint that names it. When the reader's function differs from the
reference, :func:`check` shows the first input where it does (expected against got) and, if the
reader's outputs are those of a catalogued mistake, that mistake's hint. The catalogue doubles as
the tests: every planted mistake must fail with its own hint (``tests/test_exercises.py``).

A topic module (``aigc_lib/exercises/<notebook stem>.py``) declares its exercises::

    @exercise(reference=models.vae.gaussian_kl)
    def gaussian_kl(g):                       # the key is "<module>.<function>": "vae.gaussian_kl"
        yield torch.zeros(1, 2), torch.zeros(1, 2)   # each item: the positional arguments
        yield torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)

    @gaussian_kl.mistake("there is a factor 1/2 in front of the sum")   # a wrong answer and its hint
    def _(mu, logvar):
        return (mu**2 + logvar.exp() - 1 - logvar).sum(-1)

The package discovers topic modules by itself (:func:`exercises`), so a new one needs no edit here.
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from aigc_lib.config import generator

_REGISTRY: dict[str, "Exercise"] = {}


@dataclass
class Mistake:
    """A wrong implementation that people write, and the hint that names the mistake."""
    hint: str
    fn: Callable


@dataclass
class Exercise:
    """``reference(*args)`` is right on every ``args`` that ``inputs(g)`` yields (``g``: a seeded
    ``torch.Generator``); outputs agree within ``atol`` + ``rtol`` (tensors, numbers, nested tuples,
    lists and dicts of them; strings and other values exactly)."""
    key: str
    reference: Callable
    inputs: Callable[[torch.Generator], Iterable[tuple]]
    atol: float = 1e-5
    rtol: float = 1e-4
    mistakes: list[Mistake] = field(default_factory=list)

    def mistake(self, hint: str) -> Callable[[Callable], Callable]:
        """Decorator: catalogue ``fn`` as a wrong implementation whose outputs earn ``hint``."""
        def add(fn: Callable) -> Callable:
            self.mistakes.append(Mistake(hint, fn))
            return fn
        return add

    def cases(self) -> list[tuple]:
        """The inputs, as argument tuples (the same on every call: the generator is seeded)."""
        return [args if isinstance(args, tuple) else (args,) for args in self.inputs(generator(35))]

    def same(self, expected: Any, got: Any) -> str | None:
        """``None`` if ``got`` matches ``expected``, else what differs (one line)."""
        return _difference(expected, got, self.atol, self.rtol)


def exercise(reference: Callable, atol: float = 1e-5, rtol: float = 1e-4) -> Callable[[Callable], Exercise]:
    """Decorator on an inputs generator ``name(g)``: register the exercise ``"<topic>.<name>"``,
    ``topic`` being the module's name (the notebook's stem), and return it."""
    def register(inputs: Callable) -> Exercise:
        topic = inputs.__module__.rsplit(".", 1)[-1]
        key = f"{topic}.{inputs.__name__}"
        if key in _REGISTRY and _REGISTRY[key].inputs.__qualname__ != inputs.__qualname__:
            raise ValueError(f"two exercises are called {key!r}: rename one")
        _REGISTRY[key] = Exercise(key, reference, inputs, atol, rtol)
        return _REGISTRY[key]
    return register


def exercises() -> dict[str, Exercise]:
    """Every exercise, by key; imports each topic module of this package the first time."""
    package = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name != "core" and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def get(key: str) -> Exercise:
    """The exercise called ``key`` ("<topic>.<name>"); imports only its topic's module."""
    package, topic = __name__.rsplit(".", 1)[0], key.split(".")[0]
    if key not in _REGISTRY and topic.isidentifier() and importlib.util.find_spec(f"{package}.{topic}"):
        importlib.import_module(f"{package}.{topic}")
    found = _REGISTRY if key in _REGISTRY else exercises()
    if key not in found:
        near = [k for k in found if k.startswith(topic + ".")] or list(found)
        raise ValueError(f"no exercise {key!r}; there are: {', '.join(near)}")
    return found[key]


def reference(key: str) -> Callable:
    """The package's implementation that exercise ``key`` checks against."""
    return get(key).reference


class Report:
    """What :func:`check` found: true if the function passed; shown (or printed) as its message."""

    def __init__(self, passed: bool, message: str):
        self.passed, self.message = passed, message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__


def check(key: str, fn: Callable) -> Report:
    """Run ``fn`` on every input of exercise ``key`` and compare it with the reference.

    Returns a :class:`Report`, true when ``fn`` agrees everywhere; a notebook shows its message:
    a pass line, "not implemented yet" for a stub that raises ``NotImplementedError``, or the
    first input where ``fn`` differs, expected against got, with the hint of a known mistake.
    """
    ex = get(key)
    cases = ex.cases()
    got_all = []
    for i, args in enumerate(cases):
        expected = ex.reference(*copy.deepcopy(args))
        try:
            got = fn(*copy.deepcopy(args))
        except NotImplementedError:
            return Report(False, f"{key}: not implemented yet (write the function, run its cell, check again)")
        except Exception as err:  # the reader's error, said in one line, no traceback
            return Report(False, _failure(ex, i, args, f"raised {type(err).__name__}: {err}",
                                          _hint(ex, cases[:i], got_all)))
        got_all.append(got)
        differs = ex.same(expected, got)
        if differs:
            got_all += _outputs(fn, cases[i + 1:])
            lines = [f"expected: {_show(expected)}", f"got:      {_show(got)}", f"({differs})"]
            return Report(False, _failure(ex, i, args, "\n  ".join(lines), _hint(ex, cases, got_all)))
    return Report(True, f"{key}: passed on all {len(cases)} inputs")


def _outputs(fn: Callable, cases: list[tuple]) -> list:
    """``fn`` on each case until it raises (the rest are not compared)."""
    out = []
    for args in cases:
        try:
            out.append(fn(*copy.deepcopy(args)))
        except Exception:
            break
    return out


def _hint(ex: Exercise, cases: list[tuple], got_all: list) -> str | None:
    """The hint of the catalogued mistake whose outputs are the reader's, on every input where the
    reader's function ran; failing that, of one that agrees on the last of them (the failing one)."""
    if not got_all:
        return None
    partial = None
    for m in ex.mistakes:
        theirs = _outputs(m.fn, cases[:len(got_all)])
        agree = [len(theirs) > j and ex.same(theirs[j], got) is None for j, got in enumerate(got_all)]
        if all(agree):
            return m.hint
        if partial is None and agree[-1]:
            partial = m.hint
    return partial


def _failure(ex: Exercise, i: int, args: tuple, what: str, hint: str | None) -> str:
    lines = [f"{ex.key}: differs from the reference on input {i + 1}"]
    lines += [f"  {name}: {_show(a)}" for name, a in zip(_names(ex.reference, len(args)), args)]
    lines += [f"  {what}"]
    if hint:
        lines += [f"hint: {hint}"]
    return "\n".join(lines)


def _names(fn: Callable, n: int) -> list[str]:
    """The names of ``fn``'s first ``n`` parameters (``argument 1``, ... where it has no signature)."""
    try:
        names = list(inspect.signature(fn).parameters)[:n]
    except (TypeError, ValueError):
        names = []
    return names + [f"argument {j + 1}" for j in range(len(names), n)]


def _show(x: Any) -> str:
    """A short picture of a value: small tensors in full, large ones by shape and a few entries."""
    if isinstance(x, torch.Tensor):
        if x.numel() <= 12:
            values = [round(v, 4) if isinstance(v, float) else v for v in x.flatten().tolist()]
            return f"tensor{tuple(x.shape)} {x.dtype}".replace("torch.", "") + f" {values}"
        head = [round(v, 4) if isinstance(v, float) else v for v in x.flatten()[:4].tolist()]
        return f"tensor{tuple(x.shape)} {x.dtype}".replace("torch.", "") + f" starting {head}..."
    if isinstance(x, (list, tuple)) and len(x) > 8:
        return f"{type(x).__name__} of {len(x)}, starting {[_show(v) for v in x[:4]]}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_show(v) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner})"
    if isinstance(x, float):
        return f"{x:.6g}"
    if " object at 0x" in repr(x):  # an object without a repr: its simple settings
        simple = {k: v for k, v in vars(x).items() if isinstance(v, (int, float, str)) and not k.startswith("_")}
        return f"{type(x).__name__}({', '.join(f'{k}={v!r}' for k, v in simple.items())})"
    return repr(x)


def _difference(expected: Any, got: Any, atol: float, rtol: float) -> str | None:
    if got is None and expected is not None:
        return "your function returned None: is a `return` missing?"
    if isinstance(expected, torch.Tensor) or (isinstance(expected, (int, float)) and not isinstance(expected, bool)):
        try:
            got_t = torch.as_tensor(got)
        except Exception:
            return f"expected a tensor or number, got a {type(got).__name__}"
        exp_t = torch.as_tensor(expected)
        if tuple(got_t.shape) != tuple(exp_t.shape):
            return f"shape {tuple(got_t.shape)}, expected {tuple(exp_t.shape)}"
        e, g = exp_t.detach().double().cpu(), got_t.detach().double().cpu()
        both_inf = torch.isinf(e) & torch.isinf(g) & (torch.sign(e) == torch.sign(g))
        e, g = torch.where(both_inf, 0.0, e), torch.where(both_inf, 0.0, g)
        bad = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            at = tuple(int(v) for v in bad.nonzero()[0])
            return f"first difference at index {at}: expected {e[at].item():.6g}, got {g[at].item():.6g}" \
                if at else f"expected {e.item():.6g}, got {g.item():.6g}"
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a {type(expected).__name__} of {len(expected)}, got {_show(got)}"
        for j, (e, g) in enumerate(zip(expected, got)):
            d = _difference(e, g, atol, rtol)
            if d:
                return f"item {j}: {d}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"expected the keys {sorted(expected, key=str)}, got {_show(got)}"
        for k in expected:
            d = _difference(expected[k], got[k], atol, rtol)
            if d:
                return f"at {k!r}: {d}"
        return None
    return None if got == expected else f"expected {expected!r}, got {got!r}"
