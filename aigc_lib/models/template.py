"""The oldest generator: fill the slots of hand-written templates.

A template such as ``"The {adjective} {noun} {verb} at dawn."`` with word lists for each slot
generates every combination and nothing else: the output space is finite and countable, which is
exactly what learned generative models move beyond.
"""
from __future__ import annotations

import math
import string

import torch


class TemplateGenerator:
    def __init__(self, templates: list[str], slots: dict[str, list[str]]):
        if not templates:
            raise ValueError("give at least one template")
        self.templates, self.slots = list(templates), {k: list(v) for k, v in slots.items()}
        for t in self.templates:
            for name in self.slot_names(t):
                if not self.slots.get(name):
                    raise ValueError(f"template {t!r} uses slot {{{name}}} but no words were given for it")

    @staticmethod
    def slot_names(template: str) -> list[str]:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field]

    def generate(self, generator: torch.Generator | None = None) -> str:
        """Pick a template, then a word for each slot, uniformly at random."""
        def pick(options: list[str]) -> str:
            return options[int(torch.randint(len(options), (1,), generator=generator))]

        template = pick(self.templates)
        return template.format(**{name: pick(self.slots[name]) for name in self.slot_names(template)})

    def num_outputs(self) -> int:
        """How many different texts the generator can produce (an upper bound if templates collide)."""
        return sum(math.prod(len(self.slots[n]) for n in self.slot_names(t)) for t in self.templates)
