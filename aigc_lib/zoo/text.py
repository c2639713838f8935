"""The book's trained text models: the pretraining chapter's Shakespeare GPT, the n-gram baselines,
and the responsible-AIGC chapter's distilled student and memorization models."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from aigc_lib.compression import Distillation
from aigc_lib.config import by_profile, device, generator, seed_everything
from aigc_lib.data import load_shakespeare
from aigc_lib.metrics.text import probe_starts, verbatim_lengths
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.models.ngram import CharNGram
from aigc_lib.sampling import generate
from aigc_lib.tokenizers import CharTokenizer
from aigc_lib.training.lm import LMTrainConfig, evaluate, train_lm
from aigc_lib.zoo.recipe import Recipe

BASELINE_ORDER = 3  # the "trigram" baseline that later chapters compare against
SMOKE_LM = dict(steps=4, batch_size=2, warmup_steps=1, eval_interval=2, eval_batches=1, checkpoint_interval=4)
"""A language model's training under ``AIGC_SMOKE=1``: four steps on two sequences (the recipes' ``smoke_settings``)."""


def shakespeare_ngram(order: int = BASELINE_ORDER) -> CharNGram:
    """An order-``order`` character model counted on the training plays (about a second; not cached).

    The default, a trigram (2.08 nats/char on the validation plays), is the book's named baseline.
    The background chapter also sweeps the order: the best, order 5 (about 1.71 nats/char), is a
    strong model that the pretraining chapter's first GPT (:class:`ShakespeareGPT`, nanoGPT's
    recipe) does *not* beat, and that the same model trained with :class:`ModernShakespeareGPT`'s
    recipe in about the same time does; chapters that compare with the n-gram report both, honestly.
    """
    corpus = load_shakespeare()
    return CharNGram(order, corpus.vocab).fit(corpus.train)


def char_tokenizer() -> CharTokenizer:
    """The character tokenizer of every Shakespeare model (the corpus's 65 characters)."""
    return CharTokenizer(load_shakespeare().vocab)


def _gpt_config() -> GPTConfig:
    vocab_size = len(load_shakespeare().vocab)
    return by_profile(quick=GPTConfig(block_size=64, vocab_size=vocab_size, n_layer=4, n_head=4, n_embd=128),
                      full=GPTConfig(block_size=256, vocab_size=vocab_size, n_layer=6, n_head=6, n_embd=384,
                                     dropout=0.2))


def _train_config() -> LMTrainConfig:
    return by_profile(
        quick=LMTrainConfig(steps=2000, batch_size=12, block_size=64, lr=2e-3, min_lr=1e-4, warmup_steps=100,
                            eval_interval=250, eval_batches=20, checkpoint_interval=500),
        full=LMTrainConfig(steps=5000, batch_size=64, block_size=256, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                           eval_interval=250, eval_batches=200, compile=True, checkpoint_interval=1000))


@dataclass
class ShakespeareGPT(Recipe):
    """The book's character-level GPT, pretrained on Shakespeare's plays.

    ``quick`` is nanoGPT's CPU recipe for shakespeare_char (4 layers, 4 heads, 128-d, context 64,
    batch 12, 2,000 steps) with twice its peak learning rate (2e-3 instead of 1e-3, which lowers
    the final validation loss at the same cost); ``full`` is its GPU recipe (6 layers, 6 heads,
    384-d, context 256, batch 64, 5,000 steps, dropout 0.2). ``load()`` returns
    ``(model, tokenizer, history)``: the training curves, ``val_loss_full`` (nats/char over every
    character of the validation plays), ``samples`` and ``sample_sets`` (texts drawn during
    training at ``sample_steps``). An interrupted training resumes from a partial checkpoint.
    """

    name, version = "shakespeare-char-gpt", 2  # 2: the history has eval_steps_seconds
    chapter, cost = "pretraining_gpt", "80-140 s"
    smoke_settings = dict(SMOKE_LM, sample_steps=[0, 4], sample_chars=40)  # 40: no sliding window
    model: GPTConfig = field(default_factory=_gpt_config)
    train: LMTrainConfig = field(default_factory=_train_config)
    sample_steps: list[int] = field(default_factory=lambda: by_profile(quick=[0, 250, 500, 1000, 2000],
                                                                       full=[0, 250, 500, 1000, 5000]))
    sample_chars: int = 300
    sample_texts: int = 8

    def build(self) -> GPT:
        seed_everything(self.train.seed)
        return GPT(self.model)

    def teacher(self):
        """The model this one learns from besides the data (none: it is pretrained from scratch)."""
        return None

    def fit(self, model: GPT, progress: bool) -> dict:
        tok, corpus = char_tokenizer(), load_shakespeare()
        train = torch.tensor(tok.encode(corpus.train), dtype=torch.uint8)
        val = torch.tensor(tok.encode(corpus.val), dtype=torch.uint8)
        prompt = torch.tensor([tok.encode("\n")], device=device())

        def on_eval(step: int, m, history: dict) -> None:
            # Plain sampling at temperature 1 (the GPT-2 project covers decoding), several texts per step so
            # that statistics of the samples are not one text's luck.
            if step in self.sample_steps:
                out = generate(m, prompt, self.sample_chars, do_sample=True, sliding_window=True,
                               num_return_sequences=self.sample_texts, generator=generator(step))
                texts = [tok.decode(row[1:].tolist()) for row in out]
                history.setdefault("samples", []).append([step, texts[0]])
                history.setdefault("sample_sets", []).append([step, texts])

        model.to(device())
        teacher = self.teacher()
        trained = model if teacher is None else Distillation(model, teacher, **self.distill_settings())
        partial = self.checkpoint_path().with_suffix(".partial.pt")
        history = train_lm(trained, train, val, self.train, checkpoint=partial, on_eval=on_eval, progress=progress)
        start = time.perf_counter()
        history["val_loss_full"] = evaluate(model, val, self.model.block_size, progress=progress)
        history["eval_seconds"] = time.perf_counter() - start
        history["num_params"] = model.num_params()
        model.cpu()
        partial.unlink(missing_ok=True)
        return history

    def result(self, model: GPT, history: dict) -> tuple:
        return model.to(device()), char_tokenizer(), history


MODERN_SWITCHES = dict(rope=True, mlp="relu2", qk_norm=True, bias=False, tie_embeddings=False)
"""The architecture switches of :class:`ModernShakespeareGPT` (measured together in ``tools/gpt_ablation.py``)."""


def _modern_gpt_config() -> GPTConfig:
    return GPTConfig(**{**vars(_gpt_config()), **MODERN_SWITCHES})


def _modern_train_config() -> LMTrainConfig:
    return by_profile(
        quick=LMTrainConfig(steps=1000, batch_size=24, block_size=64, lr=2e-3, min_lr=1e-4, warmup_steps=100,
                            optimizer="muon", muon_lr=0.02, eval_interval=100, eval_batches=20,
                            checkpoint_interval=500),
        full=LMTrainConfig(**{**vars(_train_config()), "optimizer": "muon", "muon_lr": 0.02}))


@dataclass
class ModernShakespeareGPT(ShakespeareGPT):
    """The book's character-level GPT trained with a modern recipe: same size and data, more learned per CPU second.

    The model is :class:`ShakespeareGPT`'s (4 layers, 128-d, context 64) with rotary position
    embeddings, a ReLU² MLP, QK-norm, no biases and an untied output layer (``MODERN_SWITCHES``),
    and it trains with Muon on the blocks' weight matrices (AdamW for the rest) at batch 24 for
    1,000 steps, under two minutes on two CPU cores. The full profile applies the same switches and
    optimizer to the GPU shape and budget of :class:`ShakespeareGPT` (not measured on a GPU yet).
    ``load()`` returns ``(model, tokenizer, history)`` like :class:`ShakespeareGPT`.
    """

    name, version = "shakespeare-char-gpt-modern", 1
    chapter, cost = "pretraining_gpt", "110-130 s"
    smoke_settings = dict(SMOKE_LM, sample_steps=[4], sample_chars=40)
    model: GPTConfig = field(default_factory=_modern_gpt_config)
    train: LMTrainConfig = field(default_factory=_modern_train_config)
    sample_steps: list[int] = field(default_factory=lambda: by_profile(quick=[1000], full=[5000]))


@dataclass
class DistilledGPT(ShakespeareGPT):
    """A small character GPT distilled from the book's GPT.

    It trains on the data and on the book's GPT's predictions.
    The student's loss is ``alpha * T^2 KL(teacher_T || student_T) + (1 - alpha) * cross-entropy``
    (Hinton et al. 2015). Its default size (3 layers, 64-d) is the pretraining chapter's middle scaling model,
    trained there on the data alone with the same recipe, so the two compare at equal steps.
    """

    name, version = "shakespeare-char-gpt-distilled", 1
    chapter, cost = "responsible_aigc", "70 s"
    smoke_settings = dict(SMOKE_LM, sample_steps=[])
    model: GPTConfig = field(default_factory=lambda: GPTConfig(**{**vars(_gpt_config()), "n_layer": 3, "n_head": 4,
                                                                         "n_embd": 64}))
    sample_steps: list[int] = field(default_factory=list)
    alpha: float = 0.5
    temperature: float = 2.0
    teacher_recipe: ShakespeareGPT = field(default_factory=ShakespeareGPT)

    def teacher(self) -> GPT:
        return self.teacher_recipe.load(progress=False)[0].to(device())

    def distill_settings(self) -> dict:
        return {"alpha": self.alpha, "temperature": self.temperature}


MEMORIZATION_SIZES = {"2 layers, 32-d": dict(n_layer=2, n_head=2, n_embd=32),  # the memorization study's two models
                      "4 layers, 128-d": dict(n_layer=4, n_head=4, n_embd=128)}


@dataclass
class SmallTextGPT(Recipe):
    """A GPT trained for many epochs on a short text, to measure memorization.

    The pretraining chapter's recipe on ``n_chars`` characters of the poems.
    That chapter's model sees each training character about a third of a time and writes back no
    more of its training text than of text it never saw; memorization needs repetition (Carlini et
    al. 2023; Kandpal et al. 2022). Here the model trains on a short text for many epochs, and
    every ``eval_interval`` steps :func:`~aigc_lib.metrics.text.verbatim_lengths` measures how much
    of it, and of the next ``n_chars`` characters (held out), the model writes back from a prefix.
    ``load()`` returns ``(model, tokenizer, history)``; ``history["verbatim"]`` holds per evaluation
    the mean verbatim length and the share of probes extracted in full, for both texts.
    """

    name = "small-text-gpt"
    chapter, cost = "responsible_aigc", "13 s (2 layers), 100 s (4 layers)"
    smoke_settings = dict(SMOKE_LM, probes=4)
    model: GPTConfig = field(default_factory=_gpt_config)
    train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(
        **{**vars(_train_config()), "steps": 800, "eval_interval": 100, "checkpoint_interval": 800}))
    n_chars: int = 4000
    probes: int = 200
    prefix_length: int = 32
    n_new: int = 32

    def __post_init__(self):
        if self.n_chars < 1000:
            raise ValueError(f"n_chars must be >= 1000 (the text is cut into 64-character windows), got {self.n_chars}")

    def build(self) -> GPT:
        seed_everything(self.train.seed)
        return GPT(self.model)

    def fit(self, model: GPT, progress: bool) -> dict:
        tok = char_tokenizer()
        text = torch.tensor(tok.encode(load_shakespeare().poems[:2 * self.n_chars]), dtype=torch.uint8)
        parts = {"train": text[:self.n_chars], "held_out": text[self.n_chars:]}
        span = self.prefix_length + self.n_new
        probes = {name: probe_starts(part, span, self.n_new, self.probes, generator(i))
                  for i, (name, part) in enumerate(parts.items())}

        def on_eval(step: int, net, history: dict) -> None:
            row = {"step": step}
            for name, part in parts.items():
                lengths = verbatim_lengths(net, part, probes[name], prefix_length=self.prefix_length,
                                           n_new=self.n_new).float()
                row[f"{name}_mean"] = lengths.mean().item()
                row[f"{name}_extracted"] = (lengths == self.n_new).float().mean().item()
            history.setdefault("verbatim", []).append(row)
            net.train()

        history = train_lm(model.to(device()), parts["train"], parts["held_out"], self.train,
                           on_eval=on_eval, progress=progress)
        history["epochs"] = self.train.steps * history["tokens_per_step"] / self.n_chars
        model.cpu()
        return history

    def result(self, model: GPT, history: dict) -> tuple:
        return model.to(device()), char_tokenizer(), history
