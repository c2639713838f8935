"""What every trained model of the book shares: a recipe, one rule for settings, one cache key.

A recipe is a dataclass holding every setting that produces one model (nested dataclasses such as
:class:`~aigc_lib.models.gpt.GPTConfig` allowed), plus ``build()`` (an untrained model) and
``fit(model, progress)`` (train it, return a history dict). :meth:`Recipe.load` returns the
cached model when one exists and trains it otherwise; the cache key is the recipe as a dict.

Settings change through one rule, :meth:`Recipe.replace`: a keyword names a field of the recipe
or of one of its nested configs (one that several configs share, e.g. ``block_size``, sets all
of them); anything else is an error that lists what exists. A recipe's ``variant`` field (e.g. a
GAN's ``kind``) picks the defaults of the others, so it is given to the constructor, not replaced.

Under ``AIGC_SMOKE=1`` (the full profile at toy sizes, :func:`aigc_lib.config.smoke`), :meth:`load`
trains :meth:`Recipe.sized`: the recipe with its ``smoke_settings`` (a few steps, tiny batches)
replaced by the same rule, so the full profile's model shapes and loops run in seconds.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from aigc_lib.cache import checkpoint_path, load_or_train
from aigc_lib.config import smoke


@dataclasses.dataclass
class Recipe:
    """A dataclass of settings plus ``build()`` and ``fit()``; see the module docstring."""

    name: ClassVar[str] = ""  # the cache name; :attr:`cache_name` may add the variant
    variant: ClassVar[str | None] = None  # a field that picks other fields' defaults (e.g. "kind")
    version: ClassVar[int] = 0  # bump when ``fit`` changes what it produces
    chapter: ClassVar[str] = ""  # where the book trains it: the notebook's stem, e.g. "gan"
    cost: ClassVar[str] = ""  # training time in the quick profile, measured in CI (2-core CPU)
    smoke_settings: ClassVar[dict[str, Any]] = {}  # settings under AIGC_SMOKE=1: a few steps of the full profile

    def build(self) -> nn.Module:
        raise NotImplementedError

    def fit(self, model: nn.Module, progress: bool) -> dict:
        raise NotImplementedError

    def result(self, model: nn.Module, history: dict) -> tuple:
        """What :meth:`load` returns: ``(model, history)`` unless a recipe adds e.g. its tokenizer."""
        return model, history

    # ------------------------------------------------------------------ shared by every recipe
    @property
    def cache_name(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        return _from_dict(cls, d)

    def replace(self, **overrides: Any) -> "Recipe":
        """A copy with ``overrides`` applied by the rule in the module docstring."""
        names = {f.name for f in dataclasses.fields(self)}
        nested = {n: getattr(self, n) for n in names if dataclasses.is_dataclass(getattr(self, n))}
        top: dict[str, Any] = {}
        inner: dict[str, dict[str, Any]] = {n: {} for n in nested}
        for key, value in overrides.items():
            if key == self.variant and value != getattr(self, key):
                raise ValueError(f"{key!r} picks the defaults of the other settings: start from "
                                 f"{type(self).__name__}({key}={value!r}) instead of replacing it")
            owners = [n for n, config in nested.items() if key in {f.name for f in dataclasses.fields(config)}]
            if key not in names and not owners:
                raise ValueError(f"unknown setting {key!r} for the {self.cache_name} recipe; choose from "
                                 f"{_settings(self)}")
            if key in names:
                top[key] = value
            for n in owners if key not in names else ():
                inner[n][key] = value
        for n, changes in inner.items():  # all at once: a config validates its fields together
            if changes:
                top[n] = dataclasses.replace(top.get(n, nested[n]), **changes)
        return dataclasses.replace(self, **top)

    def sized(self) -> "Recipe":
        """The recipe that :meth:`load` trains: this one, or under ``AIGC_SMOKE=1`` with its ``smoke_settings``."""
        return self.replace(**self.smoke_settings) if smoke() else self

    def checkpoint_path(self) -> Path:
        recipe = self.sized()
        return checkpoint_path(recipe.cache_name, recipe.to_dict(), recipe.version)

    def is_cached(self) -> bool:
        return self.checkpoint_path().exists()

    def load(self, progress: bool = True) -> tuple:
        """The trained model (eval mode) and its history: from the cache, else trained now and cached."""
        recipe = self.sized()
        model, history = load_or_train(recipe.cache_name, recipe.to_dict(), recipe.build,
                                       lambda m: recipe.fit(m, progress), version=recipe.version)
        return recipe.result(model, history)


def _settings(recipe: Recipe) -> list[str]:
    names = []
    for f in dataclasses.fields(recipe):
        value = getattr(recipe, f.name)
        names += [g.name for g in dataclasses.fields(value)] if dataclasses.is_dataclass(value) else [f.name]
    return sorted(set(names))


def _from_dict(cls: type, d: dict) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value, hint = d[f.name], hints[f.name]
        kinds = (hint,) if typing.get_origin(hint) is tuple else typing.get_args(hint) or (hint,)  # X | None
        nested = [k for k in kinds if isinstance(k, type) and dataclasses.is_dataclass(k)]
        if nested and isinstance(value, dict):
            value = _from_dict(nested[0], value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
