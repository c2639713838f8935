"""The fine-tuning chapter's models: the pretraining chapter's GPT adapted to the poems, taught to
follow instructions, and taught a preference.

* :class:`PoemGPT`: continued pretraining on the poems with ``method`` "full" (every parameter),
  "last_block", "lora" (a rank-``r`` adapter on every linear layer of the blocks) or "scratch"
  (a new model, the same steps);
* :class:`InstructionGPT`: supervised fine-tuning on rule-built instructions
  (:mod:`aigc_lib.data.instructions`), the loss on the answers only;
* :class:`QuestionDPO`: DPO on pairs of the first lines of speeches the pretrained model writes
  (a line, not a whole speech), preferring questions; the pretrained model is the frozen reference.

Each recipe starts from its ``base``, :class:`~aigc_lib.zoo.text.ShakespeareGPT` (cached; its
settings are part of the cache key), and measures itself on held-out data while it trains, so the
chapter reads its results from the cache.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from aigc_lib.config import by_profile, device, generator, seed_everything
from aigc_lib.data import load_shakespeare
from aigc_lib.data.instructions import TASKS, first_line, instruction_examples, speech_prompts
from aigc_lib.models.gpt import GPT
from aigc_lib.models.lora import add_lora
from aigc_lib.training.finetune import (complete, exact_match, freeze_all_but_last_block, greedy_answers, pack,
                                        train_sft, trainable_parameters)
from aigc_lib.training.lm import LMTrainConfig, evaluate, train_lm
from aigc_lib.training.preference import preference_pairs, sequence_kl, train_dpo
from aigc_lib.zoo.recipe import Recipe
from aigc_lib.zoo.text import SMOKE_LM, ShakespeareGPT, char_tokenizer

FINETUNE_METHODS = ("full", "last_block", "lora", "scratch")
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")  # every linear layer inside the blocks
_LR = {"full": 1e-3, "last_block": 1e-3, "lora": 5e-3, "scratch": 2e-3}


@dataclass
class PoemGPT(Recipe):
    """The pretrained Shakespeare GPT trained on, and validated on, poems it never saw.

    It trains on every poem but the sonnets and validates on the sonnets (``load_shakespeare()``'s
    ``poems_train`` / ``poems_val``), for the same number of steps whatever the ``method``. The
    learning rate is each method's best of those tried in the fine-tuning chapter's measurements. ``alpha`` is
    held fixed as ``r`` changes, as Hu et al. did. ``history`` adds ``val_loss_full`` (every
    sonnet character), ``trainable`` parameters, ``checkpoint_bytes`` (what the method must store
    beside the base model; all of it for "full" and "scratch") and ``seconds_per_step``.
    """

    name, variant = "poem-gpt", "method"
    chapter, cost = "finetuning", "11-22 s each"
    smoke_settings = SMOKE_LM
    method: str = "full"
    r: int = 4
    alpha: float = 8.0
    train: LMTrainConfig | None = None
    base: ShakespeareGPT = field(default_factory=ShakespeareGPT)

    def __post_init__(self):
        if self.method not in FINETUNE_METHODS:
            raise ValueError(f"method must be one of {FINETUNE_METHODS}, got {self.method!r}")
        if self.train is None:
            lr = _LR[self.method]
            self.train = by_profile(
                quick=LMTrainConfig(steps=300, batch_size=12, block_size=64, lr=lr, min_lr=lr / 10,
                                    warmup_steps=20, eval_interval=50, eval_batches=10),
                full=LMTrainConfig(steps=100, batch_size=16, block_size=256, lr=lr / 2, min_lr=lr / 20,
                                   warmup_steps=10, eval_interval=10, eval_batches=20))  # about 4 passes

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.method}" + (f"-r{self.r}" if self.method == "lora" else "")

    def build(self) -> GPT:
        seed_everything(self.train.seed)
        if self.method == "scratch":
            return GPT(self.base.model)
        model = self.base.load(progress=False)[0].cpu()
        if self.method == "last_block":
            return freeze_all_but_last_block(model)
        if self.method == "lora":
            return add_lora(model, LORA_TARGETS, self.r, self.alpha)
        return model

    def fit(self, model: GPT, progress: bool) -> dict:
        tok, corpus = char_tokenizer(), load_shakespeare()
        train, val = (torch.tensor(tok.encode(text), dtype=torch.uint8)
                      for text in (corpus.poems_train, corpus.poems_val))
        history = train_lm(model.to(device()), train, val, self.train, progress=progress)
        history["val_loss_full"] = evaluate(model, val, model.config.block_size, progress=False)
        history["trainable"] = trainable_parameters(model)
        history["checkpoint_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        history["seconds_per_step"] = history["loop_seconds"] / self.train.steps
        model.cpu()
        return history


@dataclass
class InstructionGPT(Recipe):
    """The pretrained Shakespeare GPT after supervised fine-tuning on rule-built instructions.

    ``n_train`` examples come from the training plays; ``history["accuracy"]`` holds the exact-match accuracy
    per task on ``n_test`` held-out instructions from the validation plays, before (the
    pretrained model, same prompts) and after fine-tuning, and ``history["predictions"]`` the
    fine-tuned model's answers.
    """

    name = "instruction-gpt"
    chapter, cost = "finetuning", "50 s"
    smoke_settings = dict(n_train=64, n_test=20, steps=4, batch_size=4)
    n_train: int = 3000
    n_test: int = 300
    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    base: ShakespeareGPT = field(default_factory=ShakespeareGPT)

    def build(self) -> GPT:
        return self.base.load(progress=False)[0].cpu()

    def examples(self) -> tuple[list, list]:
        corpus = load_shakespeare()
        return (instruction_examples(corpus.train, self.n_train, seed=self.seed),
                instruction_examples(corpus.val, self.n_test, seed=1000 + self.seed))

    def accuracy(self, model: GPT, test: list) -> tuple[dict[str, float], list[str]]:
        predictions = greedy_answers(model, char_tokenizer(), [p for _, p, _ in test])
        return {task: exact_match([y for y, (t, _, _) in zip(predictions, test) if t == task],
                                  [a for t, _, a in test if t == task]) for task in TASKS}, predictions

    def fit(self, model: GPT, progress: bool) -> dict:
        train, test = self.examples()
        model.to(device())
        before, _ = self.accuracy(model, test)
        ids, mask = pack(char_tokenizer(), [p for _, p, _ in train], [a + "\n" for _, _, a in train],
                         model.config.block_size + 1)
        history = train_sft(model, ids, mask, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                            seed=self.seed, progress=progress)
        after, predictions = self.accuracy(model, test)
        model.cpu()
        return {**history, "accuracy": {"before": before, "after": after}, "predictions": predictions}


@dataclass
class QuestionDPO(Recipe):
    """The pretrained Shakespeare GPT after DPO towards first lines of speeches that ask a question.

    For each of the ``n_prompts`` most frequent speakers of the training plays the pretrained
    model writes ``samples`` first lines (to the first line break, at most ``max_new_tokens``
    characters) from the heading ``"\\nNAME.\\n"``; a question and a non-question for the same
    speaker make a pair. ``history["eval"]`` holds, for the reference and for the trained policy,
    the share of questions among ``eval_samples`` first lines per speaker of
    the validation plays (``eval_prompts`` of them) and the KL divergence to the reference.
    """

    name = "question-dpo"
    chapter, cost = "finetuning", "45 s each"
    # Under AIGC_SMOKE=1 a GPT trained four steps writes no questions (a "?" before the first line
    # break is rarer than 1 in 800 speeches), so the preference there is a line ending in "e".
    smoke_settings = dict(n_prompts=40, samples=4, steps=3, batch_size=4, eval_prompts=5, eval_samples=4,
                          ends_with="e")
    n_prompts: int = 600
    samples: int = 8
    max_new_tokens: int = 48
    beta: float = 0.5
    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    eval_prompts: int = 50
    eval_samples: int = 20
    seed: int = 0
    base: ShakespeareGPT = field(default_factory=ShakespeareGPT)
    ends_with: str = "?"  # the preferred speeches' first line ends with this: a question

    def build(self) -> GPT:
        return self.base.load(progress=False)[0].cpu()

    def preferred(self, speech: str) -> bool:
        """The preference rule: the speech's first line ends with ``ends_with`` (a question mark)."""
        return first_line(speech).rstrip().endswith(self.ends_with)

    def report(self, policy: GPT, reference: GPT) -> dict:
        """Question rate and KL to the reference on speeches ``policy`` writes for held-out speakers."""
        tok, prompts = char_tokenizer(), speech_prompts(load_shakespeare().val, self.eval_prompts)
        samples = complete(policy, tok, prompts, self.max_new_tokens, do_sample=True,
                           num_return_sequences=self.eval_samples, generator=generator(self.seed + 1))
        flat = [(p, s) for p, row in zip(prompts, samples) for s in row]
        ids, mask = pack(tok, [p for p, _ in flat], [s for _, s in flat], policy.config.block_size + 1)
        return {"question_rate": sum(self.preferred(s) for _, s in flat) / len(flat),
                "kl": sequence_kl(policy, reference, ids.to(device()), mask.to(device())),
                "samples": [p + s for p, s in flat[::self.eval_samples]]}

    def fit(self, model: GPT, progress: bool) -> dict:
        tok, reference = char_tokenizer(), copy.deepcopy(model).to(device()).eval()
        prompts = speech_prompts(load_shakespeare().train, self.n_prompts)
        samples = complete(reference, tok, prompts, self.max_new_tokens, do_sample=True,
                           num_return_sequences=self.samples, generator=generator(self.seed))
        pairs = preference_pairs(prompts, samples, self.preferred)
        if not pairs:
            raise ValueError(f"no preference pairs among {self.n_prompts} x {self.samples} samples: raise n_prompts "
                             "or samples (a model that never writes a question cannot be paired)")
        length = model.config.block_size + 1
        chosen = pack(tok, [p for p, _, _ in pairs], [w for _, w, _ in pairs], length)
        rejected = pack(tok, [p for p, _, _ in pairs], [l for _, _, l in pairs], length)
        history = train_dpo(model.to(device()), reference, chosen, rejected, beta=self.beta, steps=self.steps,
                            batch_size=self.batch_size, lr=self.lr, seed=self.seed, progress=progress)
        history["pairs"] = len(pairs)
        history["pair_examples"] = [list(pair) for pair in pairs[:3]]
        history["eval"] = {"reference": self.report(reference, reference), "policy": self.report(model, reference)}
        model.cpu()
        return history
