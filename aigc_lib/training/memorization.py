"""Chapter 11's memorization experiment: the book's character GPT trained for many epochs on a short text.

The chapter-7 model sees each training character about a third of a time (2,000 steps of 12 x 64
characters over 4.4 million), and writes back no more of its training text than of text it never
saw. Memorization needs repetition (Carlini et al. 2023; Kandpal et al. 2022). Here the same
recipe trains on the first ``n_chars`` characters of the poems for many epochs, and every
``eval_interval`` steps :func:`aigc_lib.metrics.text.verbatim_lengths` measures how much of that
text, and of the next ``n_chars`` characters (held out), the model writes back from a prefix.
"""
from __future__ import annotations

import torch

SIZES = {"2 layers, 32-d": dict(n_layer=2, n_head=2, n_embd=32),
         "4 layers, 128-d": dict(n_layer=4, n_head=4, n_embd=128)}


def small_text_config(n_chars: int = 4000, steps: int = 800, probes: int = 200, **size) -> dict:
    """Chapter 7's recipe (model and optimizer) on ``n_chars`` characters of the poems, for ``steps`` steps."""
    from aigc_lib.training.lm import shakespeare_char_config

    if n_chars < 1000:
        raise ValueError(f"n_chars must be >= 1000 (the text is cut into 64-character windows), got {n_chars}")
    cfg = shakespeare_char_config(**size, steps=steps, eval_interval=100, checkpoint_interval=steps,
                                  sample_steps=[])
    cfg["memorization"] = {"n_chars": n_chars, "probes": probes, "prefix_length": 32, "n_new": 32}
    return cfg


def probe_starts(ids: torch.Tensor, span: int, n_new: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` random starts whose continuation is at least half non-space characters.

    (The poems hold long runs of indenting spaces, which even an untrained model "writes back".)
    """
    from aigc_lib.data import load_shakespeare

    space = torch.tensor([c.isspace() for c in load_shakespeare().vocab])
    starts = torch.randperm(len(ids) - span, generator=g)[:20 * n]  # candidates: enough to keep n
    solid = ~space[ids[starts[:, None] + span - n_new + torch.arange(n_new)].long()]
    return starts[solid.sum(1) >= n_new // 2][:n]


def small_text_gpt(progress: bool = True, **settings):
    """Train (or load) a GPT on a short text; returns ``(model, tokenizer, history)``.

    ``settings`` go to :func:`small_text_config` (``n_chars``, ``steps``, ``probes`` and the model's
    ``n_layer``, ``n_head``, ``n_embd``). ``history["verbatim"]`` holds, per evaluation step, ``step``
    and, for the training text and the held-out text, the mean verbatim length and the share of
    probes extracted in full (all ``n_new`` characters).
    """
    from aigc_lib.cache import load_or_train
    from aigc_lib.config import device, generator, seed_everything
    from aigc_lib.data import load_shakespeare
    from aigc_lib.metrics.text import verbatim_lengths
    from aigc_lib.models.gpt import GPT, GPTConfig
    from aigc_lib.tokenizers import CharTokenizer
    from aigc_lib.training.lm import LMTrainConfig, train_lm

    cfg = small_text_config(**settings)
    m = cfg["memorization"]
    corpus = load_shakespeare()
    tok = CharTokenizer(corpus.vocab)
    text = torch.tensor(tok.encode(corpus.poems[:2 * m["n_chars"]]), dtype=torch.uint8)
    seen, held_out = text[:m["n_chars"]], text[m["n_chars"]:]
    span = m["prefix_length"] + m["n_new"]
    probes = {name: probe_starts(part, span, m["n_new"], m["probes"], generator(i))
              for i, (name, part) in enumerate([("train", seen), ("held_out", held_out)])}

    def build() -> GPT:
        seed_everything(cfg["train"]["seed"])
        return GPT(GPTConfig(vocab_size=tok.vocab_size, **cfg["model"]))

    def fit(model: GPT) -> dict:
        def on_eval(step: int, net, history: dict) -> None:
            row = {"step": step}
            for name, part in (("train", seen), ("held_out", held_out)):
                lengths = verbatim_lengths(net, part, probes[name], prefix_length=m["prefix_length"],
                                           n_new=m["n_new"]).float()
                row[f"{name}_mean"] = lengths.mean().item()
                row[f"{name}_extracted"] = (lengths == m["n_new"]).float().mean().item()
            history.setdefault("verbatim", []).append(row)
            net.train()

        history = train_lm(model.to(device()), seen, held_out, LMTrainConfig(**cfg["train"]),
                           on_eval=on_eval, progress=progress)
        history["epochs"] = cfg["train"]["steps"] * history["tokens_per_step"] / len(seen)
        model.cpu()
        return history

    model, history = load_or_train("small-text-gpt", cfg, build, fit)
    return model.to(device()), tok, history
