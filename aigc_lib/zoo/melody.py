"""The applications chapter's melody GPT: a tiny GPT trained on rule-made melodies."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from aigc_lib.applications.melody import GENERATOR_VERSION, MelodyRules, NoteTokenizer, rule_melodies
from aigc_lib.config import by_profile, seed_everything
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.training.supervised import train_next_token
from aigc_lib.zoo.recipe import Recipe


def _tiny_gpt(rules: MelodyRules = MelodyRules()) -> GPTConfig:
    return GPTConfig(block_size=rules.length + 1, vocab_size=NoteTokenizer(rules).vocab_size,
                     n_layer=2, n_head=4, n_embd=48)


@dataclass
class MelodyGPT(Recipe):
    """A 2-layer GPT over note tokens, trained on rule-made melodies.

    48-d, trained on ``n_melodies`` melodies that obey the rules.
    ``load()`` returns ``(model, tokenizer, history)``: ``history["loss"]`` is the per-step training
    loss, ``history["final_loss"]`` its mean over the last 50 steps.
    """

    name, version = "melody-gpt", 1
    chapter, cost = "applications", "5 s"
    smoke_settings = dict(n_melodies=200, steps=10)
    rules: MelodyRules = field(default_factory=MelodyRules)
    generator_version: int = GENERATOR_VERSION  # of rule_melody: new melodies, new model
    n_melodies: int = field(default_factory=lambda: by_profile(quick=2000, full=10_000))
    data_seed: int = 0
    model: GPTConfig | None = None  # default: 2 layers, 48-d, reading a whole melody
    steps: int = field(default_factory=lambda: by_profile(quick=400, full=3000))
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if self.model is None:
            self.model = _tiny_gpt(self.rules)
        need = (self.rules.length + 1, NoteTokenizer(self.rules).vocab_size)
        if self.model.block_size < need[0] or self.model.vocab_size != need[1]:
            raise ValueError(f"the rules need a model with block_size >= {need[0]} and vocab_size = {need[1]}, "
                             f"got {self.model.block_size} and {self.model.vocab_size}; pass them with the rules")

    def build(self) -> GPT:
        seed_everything(self.seed)
        return GPT(self.model)

    def fit(self, model: GPT, progress: bool) -> dict:
        tok = NoteTokenizer(self.rules)
        melodies = rule_melodies(self.n_melodies, self.rules, seed=self.data_seed)
        tokens = torch.tensor([tok.encode(m) for m in melodies.tolist()])
        history = train_next_token(model, tokens, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                   seed=self.seed, progress=progress, desc="melody GPT")
        history["final_loss"] = float(np.mean(history["loss"][-50:]))
        return history

    def result(self, model: GPT, history: dict) -> tuple:
        return model, NoteTokenizer(self.rules), history
