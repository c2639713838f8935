"""The LLM-architectures chapter's models: the pretraining chapter's modern GPT with one piece of
today's open LLMs swapped at a time (RMSNorm, grouped-/multi-query attention, a mixture of
experts), each trained for the same steps on the same batches of Shakespeare."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from aigc_lib.config import by_profile, device, seed_everything
from aigc_lib.data import load_shakespeare
from aigc_lib.models.gpt import GPT, LLMConfig
from aigc_lib.training.lm import LMTrainConfig, evaluate, train_lm
from aigc_lib.zoo.text import SMOKE_LM, ModernShakespeareGPT, _modern_gpt_config, _modern_train_config, char_tokenizer

# The baseline is the pretraining chapter's modern GPT with Llama's SwiGLU MLP (width W = 344 in
# the quick profile, 8/3 of n_embd); the mixture of experts has 4 experts of width W / 2 with 2
# active per token, so that a token uses as many MLP weights as in the dense model (plus the router).
SWIGLU_WIDTH = by_profile(quick=344, full=1024)
LLM_PIECES: dict[str, dict] = {
    "baseline (LayerNorm, MHA)": {},
    "RMSNorm": dict(norm="rmsnorm"),
    "GQA, 2 KV heads": dict(n_kv_head=2),
    "MQA, 1 KV head": dict(n_kv_head=1),
    "MoE, 4 experts, top 2": dict(n_expert=4, n_expert_active=2, expert_hidden=SWIGLU_WIDTH // 2),
}
"""The chapter's variants: overrides of :class:`LLMPieceGPT`'s model, each one piece away from the baseline."""


def _piece_config() -> LLMConfig:
    return LLMConfig(**{**vars(_modern_gpt_config()), "mlp": "swiglu", "mlp_hidden": SWIGLU_WIDTH})


def _piece_train_config() -> LMTrainConfig:
    return by_profile(
        quick=LMTrainConfig(**{**vars(_modern_train_config()), "steps": 200, "warmup_steps": 20,
                               "eval_interval": 50, "eval_batches": 10, "checkpoint_interval": 200}),
        full=LMTrainConfig(**{**vars(_modern_train_config()), "steps": 2000}))


@dataclass
class LLMPieceGPT(ModernShakespeareGPT):
    """The modern Shakespeare GPT with one piece of today's open LLMs swapped at a time.

    The pieces are the settings of :class:`~aigc_lib.models.gpt.LLMConfig`.

    ``LLMPieceGPT().replace(**LLM_PIECES[name])`` is one of the chapter's variants: the same data,
    batches, optimizer (Muon) and steps as the others, so their losses compare at equal steps and
    tokens. ``load()`` returns ``(model, tokenizer, history)``; the history has ``val_loss_full``,
    ``steps_seconds`` (measured when it was trained) and, for a mixture of experts,
    ``expert_load``: at each evaluation, each layer's share of token assignments per expert on a
    fixed batch of the validation plays.
    """

    name, version = "shakespeare-llm-piece", 1
    chapter, cost = "llm_architectures", "25-70 s"
    smoke_settings = dict(SMOKE_LM, sample_steps=[])
    model: LLMConfig = field(default_factory=_piece_config)
    train: LMTrainConfig = field(default_factory=_piece_train_config)
    sample_steps: list[int] = field(default_factory=list)

    def build(self) -> GPT:
        seed_everything(self.train.seed)
        return GPT(self.model)

    def fit(self, model: GPT, progress: bool) -> dict:
        tok, corpus = char_tokenizer(), load_shakespeare()
        train = torch.tensor(tok.encode(corpus.train), dtype=torch.uint8)
        val = torch.tensor(tok.encode(corpus.val), dtype=torch.uint8)
        T = self.model.block_size
        probe = val[: (4096 // T) * T].long().view(-1, T).to(device())  # a fixed validation batch

        def on_eval(step: int, m: GPT, history: dict) -> None:
            if not self.model.n_expert:
                return
            with torch.no_grad():
                m.eval()(probe)
            loads = [(b.mlp.load.float() / b.mlp.load.sum()).tolist() for b in m.transformer.h]
            history.setdefault("expert_load", []).append([step, loads])
            m.train()

        model.to(device())
        partial = self.checkpoint_path().with_suffix(".partial.pt")
        history = train_lm(model, train, val, self.train, checkpoint=partial, on_eval=on_eval, progress=progress)
        start = time.perf_counter()
        history["val_loss_full"] = evaluate(model, val, T, progress=progress)
        history["eval_seconds"] = time.perf_counter() - start
        history["num_params"] = model.num_params()
        model.cpu()
        partial.unlink(missing_ok=True)
        return history
