"""The attention chapter's toy model: a 2-layer GPT that learns to write a sequence backwards."""
from __future__ import annotations

from dataclasses import dataclass, field

from aigc_lib.config import by_profile, generator, seed_everything
from aigc_lib.data.toy import reversal_task
from aigc_lib.models.attention import sinusoidal_positions
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.training.supervised import train_sequence_task
from aigc_lib.zoo.recipe import Recipe


@dataclass
class ReversalGPT(Recipe):
    """A 2-layer GPT that learns to write a sequence backwards.

    It trains on :func:`~aigc_lib.data.toy.reversal_task` (``length`` symbols, then reversed).
    ``pe_scale`` replaces the learned positions by a fixed table, ``pe_scale`` times the sinusoidal
    encodings (an exercise of the attention chapter); ``None`` keeps them learned.
    """

    name = "reverse-gpt"
    chapter, cost = "attention", "4 s"
    smoke_settings = dict(steps=5)
    length: int = 8
    n_symbols: int = 10
    model: GPTConfig = field(default_factory=lambda: GPTConfig(block_size=16, vocab_size=11, n_layer=2,
                                                               n_head=2, n_embd=64))
    pe_scale: float | None = None
    steps: int = field(default_factory=lambda: by_profile(quick=200, full=1000))
    batch_size: int = 64
    lr: float = 5e-3
    seed: int = 0

    def __post_init__(self):
        if self.model.block_size < 2 * self.length or self.model.vocab_size != self.n_symbols + 1:
            raise ValueError(f"the model must read 2 * length = {2 * self.length} tokens over "
                             f"n_symbols + 1 = {self.n_symbols + 1} symbols (the separator is the last)")

    def data(self, n: int, g=None):
        return reversal_task(n, self.length, self.n_symbols, generator=g)

    def build(self) -> GPT:
        seed_everything(self.seed)
        model = GPT(self.model)
        if self.pe_scale is not None:  # a fixed table: copy the encodings in and stop their gradient
            wpe = model.transformer.wpe.weight
            wpe.data.copy_(self.pe_scale * sinusoidal_positions(wpe.shape[0], self.model.n_embd))
            wpe.requires_grad_(False)
        return model

    def fit(self, model: GPT, progress: bool) -> dict:
        return train_sequence_task(model, self.data, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                   generator=generator(self.seed), progress=progress)
