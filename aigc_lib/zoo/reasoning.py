"""The reasoning chapter's models: a small GPT taught arithmetic by an imperfect teacher, then
by a verifier.

* :class:`ArithmeticSFT`: supervised fine-tuning on the teacher's responses (:func:`aigc_lib.data.
  arithmetic.teacher`), ``format`` "direct" (the answer at once) or "worked" (a chain of thought),
  the same model, data, steps and schedule for both;
* :class:`ArithmeticRewardModel`: a reward model (the SFT GPT with a scalar head) trained with the
  Bradley-Terry loss on pairs of right and wrong solutions the SFT model wrote, then best-of-n
  against it;
* :class:`ArithmeticGRPO`: GRPO from the worked SFT model with the verifiable reward.

Each recipe measures itself when it trains (greedy accuracy per problem size, pass@k and majority
vote from 16 samples, the KL to the start), so the chapter reads its results from the cache. The
model is tiny, so each recipe trains and evaluates on one thread (``threads``): the same run bit
for bit on the same CPU and libraries however busy the machine (GRPO's sampling amplifies any
change in the order of a sum), and no stall when other jobs share the cores (a GRPO step took
0.8 s on one thread and 2.0 s on two beside another job; idle, SFT is about 1.6x slower on one).
"""
from __future__ import annotations

import copy
import dataclasses
import random
import time
from dataclasses import dataclass, field

import torch

from aigc_lib.config import by_profile, device, generator, pinned_threads, run_seed, seed_everything
from aigc_lib.data import arithmetic as ar
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.models.reward import RewardModel
from aigc_lib.training.finetune import complete, pack, train_sft
from aigc_lib.training.rl import (GRPOConfig, kl_k1, kl_k3, sample_groups, sampled_accuracy, token_logprobs,
                                  train_grpo, train_reward_model)
from aigc_lib.zoo.recipe import Recipe

SIZES = (1, 2, 3, 4)  # digits of the first number in the training problems
LONGER = (5, 6)  # sizes never trained on: length generalization
SAMPLES = 16  # sampled responses per test problem for pass@k and majority vote


def _model_config() -> GPTConfig:
    return by_profile(
        quick=GPTConfig(block_size=96, vocab_size=len(ar.VOCAB), n_layer=3, n_head=4, n_embd=96, dropout=0.0),
        full=GPTConfig(block_size=128, vocab_size=len(ar.VOCAB), n_layer=6, n_head=6, n_embd=192, dropout=0.0))


def train_problems(n: int, seed: int) -> list[ar.Problem]:
    """Every size-1 problem of the training split, then ``n`` minus those of sizes 2-4 in turn."""
    small = [p for p in (ar.Problem(a, b) for a in range(10) for b in range(10)) if ar.split_of(p) == "train"]
    return small + ar.problems(n - len(small), SIZES[1:], "train", seed=seed)


def test_problems(n: int) -> dict[int, list[ar.Problem]]:
    """``n`` held-out problems per size 2-6: the test split for the trained sizes, any for the longer ones."""
    return {s: ar.problems(n, [s], "test" if s in SIZES else None, seed=100 + s) for s in SIZES[1:] + LONGER}


def validation_problems(n: int) -> list[ar.Problem]:
    return ar.problems(n, SIZES[1:], "validation", seed=50)


def greedy_accuracy(model: GPT, items: list[ar.Problem]) -> tuple[float, float]:
    """The share answered right by greedy decoding, and the mean characters per response."""
    outs = complete(model, ar.tokenizer(), [p.prompt for p in items], model.config.block_size)
    return (sum(ar.verify(o[0], p) for o, p in zip(outs, items)) / len(items),
            sum(len(o[0]) for o in outs) / len(items))


def sampled_report(model: GPT, items: list[ar.Problem], seed: int, k: int = SAMPLES) -> dict:
    """pass@k, majority@k and characters per response from ``k`` samples (temperature 1) per problem."""
    outs = complete(model, ar.tokenizer(), [p.prompt for p in items], model.config.block_size, do_sample=True,
                    num_return_sequences=k, generator=generator(seed))
    return sampled_accuracy(outs, [p.answer for p in items], ar.extract_answer)


def report(model: GPT, n_test: int, seed: int) -> dict:
    """Greedy accuracy and characters per size (2-6), and the sampled report on the trained sizes."""
    t0 = time.perf_counter()
    tests = test_problems(n_test)
    greedy = {s: greedy_accuracy(model, items) for s, items in tests.items()}
    sampled = sampled_report(model, [p for s in SIZES[1:] for p in tests[s]], seed)
    return {"greedy": {s: a for s, (a, _) in greedy.items()}, "chars": {s: c for s, (_, c) in greedy.items()},
            "sampled": sampled, "seconds": time.perf_counter() - t0}


@dataclass
class ArithmeticSFT(Recipe):
    """A 3-layer GPT taught addition by an imperfect teacher, with direct answers or worked solutions.

    ``format`` "direct" or "worked"; ``slip_rate`` of the teacher's responses slip once (the same
    problems in both formats). Both formats train the same ``steps`` with the same batches of
    problems and schedule; the worked model's greedy accuracy on ``n_val`` validation problems is
    recorded every ``eval_interval`` steps (``history["eval"]``: where it plateaus). ``history``
    also has ``tokens_seen`` (response tokens the loss saw), ``params``, ``seconds`` and ``after``
    (:func:`report`: greedy accuracy per size, characters, pass@k and majority@k from 16 samples).
    """

    name, variant, version = "arithmetic-sft", "format", 1
    chapter, cost = "reasoning", "55 s direct, 190 s worked, on one thread"
    smoke_settings = dict(n_train=200, steps=3, batch_size=8, n_val=6, n_test=4, eval_interval=2)
    format: str = "worked"
    slip_rate: float = 0.3
    n_train: int = 4000
    steps: int = field(default_factory=lambda: by_profile(quick=1500, full=4000))
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    n_val: int = 150
    eval_interval: int = 100
    n_test: int = 200
    seed: int = 0
    threads: int = 1  # PyTorch threads while it trains and evaluates (1: the run repeats bit for bit)
    model: GPTConfig = field(default_factory=_model_config)

    def __post_init__(self):
        if self.format not in ar.FORMATS:
            raise ValueError(f"format must be one of {ar.FORMATS}, got {self.format!r}")

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.format}"

    def build(self) -> GPT:
        seed_everything(self.seed)
        return GPT(self.model)

    def fit(self, model: GPT, progress: bool) -> dict:
        with pinned_threads(self.threads):
            return self._fit(model, progress)

    def _fit(self, model: GPT, progress: bool) -> dict:
        tok, train = ar.tokenizer(), train_problems(self.n_train, self.seed)
        prompts, responses = ar.examples(train, self.format, self.slip_rate, self.seed)
        length = max(len(p) + len(r) for p, r in zip(prompts, responses))  # no wasted padding
        ids, mask = pack(tok, prompts, responses, length)
        val = validation_problems(self.n_val)
        model.to(device())
        t0 = time.perf_counter()
        history = train_sft(model, ids, mask, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                            seed=self.seed, progress=progress, warmup_steps=self.warmup_steps, weight_decay=0.1,
                            final_lr=0.1, evaluate=lambda m: greedy_accuracy(m, val)[0],
                            eval_interval=self.eval_interval)
        history["seconds"] = time.perf_counter() - t0
        history["tokens_seen"] = int(self.steps * self.batch_size * mask.sum().item() / len(train))
        history["teacher_accuracy"] = sum(ar.verify(r, p) for p, r in zip(train, responses)) / len(train)
        history["params"] = model.num_params()
        history["after"] = report(model, self.n_test, self.seed + 7)
        model.cpu()
        return history


@dataclass
class ArithmeticRewardModel(Recipe):
    """A reward model on the worked SFT model's own right and wrong solutions.

    Best-of-n against it is measured when it trains.
    The SFT model samples ``samples`` solutions to each of ``n_problems`` training problems; a right
    and a wrong one for the same problem make a pair (chosen, rejected). The reward model is the SFT
    GPT with a zero-initialized scalar head (:class:`~aigc_lib.models.reward.RewardModel`), trained
    with the Bradley-Terry loss. ``history["best_of_n"][n]``: over ``n_test`` test problems of
    sizes 3-4 with 16 samples each, picking the best of the first ``n`` by the learned reward, the
    mean learned reward of the pick (``rm_reward``), its verified accuracy (``true_accuracy``) and
    the verifier's best of ``n`` (``oracle``); ``held_out_pair_accuracy`` ranks right over wrong
    samples of the same test problem.
    """

    name, version = "arithmetic-reward-model", 1
    chapter, cost = "reasoning", "45 s, after arithmetic-sft"
    smoke_settings = dict(n_problems=20, samples=4, steps=2, batch_size=4, n_test=4)
    n_problems: int = 400
    samples: int = 8
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-4
    n_test: int = 200
    seed: int = 0
    threads: int = 1
    base: ArithmeticSFT = field(default_factory=ArithmeticSFT)

    def build(self) -> RewardModel:
        policy = self.base.load(progress=False)[0]
        return RewardModel(copy.deepcopy(policy).cpu())

    def fit(self, model: RewardModel, progress: bool) -> dict:
        with pinned_threads(self.threads):
            return self._fit(model, progress)

    def _fit(self, model: RewardModel, progress: bool) -> dict:
        tok, policy = ar.tokenizer(), self.base.load(progress=False)[0].to(device())
        g = generator(self.seed)
        pool = ar.problems(self.n_problems, [3, 4], "train", seed=self.seed + 700)
        prompts, right, wrong = [], [], []
        samples = complete(policy, tok, [p.prompt for p in pool], policy.config.block_size, do_sample=True,
                           num_return_sequences=self.samples, generator=g)
        for p, texts in zip(pool, samples):
            good = [t for t in texts if ar.verify(t, p) and t.endswith("\n")]
            bad = [t for t in texts if not ar.verify(t, p) and t.endswith("\n")]
            for w, l in zip(good, bad):
                prompts.append(p.prompt), right.append(w), wrong.append(l)
        if not prompts:  # a model that is never right (a few steps of training): the rules' solution is chosen
            for p, texts in zip(pool, samples):
                prompts.append(p.prompt), right.append(ar.worked(p)), wrong.append(texts[0] or "\n")
        length = max(len(p) + max(len(w), len(l)) for p, w, l in zip(prompts, right, wrong))
        model.to(device())
        history = train_reward_model(model, pack(tok, prompts, right, length), pack(tok, prompts, wrong, length),
                                     steps=self.steps, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                                     progress=progress)
        history["pairs"] = len(prompts)
        test = ar.problems(self.n_test, [3, 4], "test", seed=104)
        outs = complete(policy, tok, [p.prompt for p in test], policy.config.block_size, do_sample=True,
                        num_return_sequences=SAMPLES, generator=g)
        rows = []
        with torch.no_grad():
            for p, texts in zip(test, outs):
                texts = [t if t else "\n" for t in texts]
                ids, mask = pack(tok, [p.prompt] * len(texts), texts, len(p.prompt) + max(map(len, texts)))
                rows.append((model(ids.to(device()), mask.to(device())).tolist(), [ar.verify(t, p) for t in texts]))
        history["best_of_n"] = {}
        for n in (1, 2, 4, 8, 16):
            picks = [(r[i], v[i], max(v[:n])) for r, v in rows for i in [max(range(n), key=r.__getitem__)]]
            history["best_of_n"][n] = {key: sum(x[j] for x in picks) / len(picks)
                                       for j, key in enumerate(("rm_reward", "true_accuracy", "oracle"))}
        ranked = [r[i] > r[j] for r, v in rows for i in range(len(v)) for j in range(len(v)) if v[i] > v[j]]
        history["held_out_pair_accuracy"] = sum(ranked) / max(1, len(ranked))
        model.cpu()
        return history


@dataclass
class ArithmeticGRPO(Recipe):
    """The worked SFT model after GRPO with the verifiable reward.

    The reference stays frozen at the SFT model.
    Every step samples ``grpo.group_size`` solutions to each of ``grpo.prompts_per_step`` problems
    drawn from ``n_pool`` training problems of sizes 2-4 (:func:`~aigc_lib.training.rl.train_grpo`).
    ``history`` is the loop's (reward, KL, ... per step; ``eval``: pass@1 from 4 samples on the
    ``n_val`` validation problems every ``grpo.eval_interval`` steps), plus ``after``
    (:func:`report`, the same test problems and sampling seed as the SFT model's) and
    ``kl_spread``: the KL to the reference per response and per token with the k1 and k3
    estimators, mean and standard deviation over 4 samples of every test problem.
    """

    name, version = "arithmetic-grpo", 1
    chapter, cost = "reasoning", "210 s, after arithmetic-sft"
    smoke_settings = dict(n_pool=20, n_val=6, grpo=GRPOConfig(steps=2, prompts_per_step=2, group_size=2,
                                                                 max_new_tokens=96, eval_interval=1))
    n_pool: int = 2000
    n_val: int = 150
    seed: int = 0  # the run's seed (``grpo.seed`` is replaced by it)
    threads: int = 1
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(
        steps=by_profile(quick=250, full=1000), prompts_per_step=16, group_size=8, max_new_tokens=96,
        lr=1e-4, warmup_steps=10, beta=0.04, updates_per_batch=2, eval_interval=50))
    base: ArithmeticSFT = field(default_factory=ArithmeticSFT)

    def build(self) -> GPT:
        return copy.deepcopy(self.base.load(progress=False)[0]).cpu()

    def fit(self, model: GPT, progress: bool) -> dict:
        with pinned_threads(self.threads):
            return self._fit(model, progress)

    def _fit(self, model: GPT, progress: bool) -> dict:
        tok, reference = ar.tokenizer(), copy.deepcopy(model).to(device()).eval()
        model.to(device())
        config = dataclasses.replace(self.grpo, seed=self.seed)
        pool = ar.problems(self.n_pool, SIZES[1:], "train", seed=self.seed + 500)
        rng = random.Random(run_seed(self.seed))
        val = validation_problems(self.n_val)

        def pass1(m: GPT) -> float:
            return sampled_report(m, val, seed=3, k=4)["pass_at_k"][1]

        history = train_grpo(model, tok, lambda step, g: rng.sample(pool, config.prompts_per_step), ar.verify,
                             config, reference=reference, evaluate=pass1, progress=progress)
        base = self.base.sized()  # its settings under AIGC_SMOKE=1 too
        history["after"] = report(model, base.n_test, base.seed + 7)
        history["kl_spread"] = kl_spread(model, reference, [p for s, items in test_problems(base.n_test).items()
                                                            if s in SIZES for p in items], seed=9)
        model.cpu()
        return history


@torch.no_grad()
def kl_spread(policy: GPT, reference: GPT, items: list[ar.Problem], seed: int, samples: int = 4) -> dict:
    """KL(policy || reference) from solutions the policy samples, with the k1 and k3 estimators:
    the mean and standard deviation of their sums per response, and of their per-token terms."""
    ids, mask, _ = sample_groups(policy, ar.tokenizer(), [p.prompt for p in items], samples,
                                 policy.config.block_size, generator=generator(seed))
    logp, ref = token_logprobs(policy, ids), token_logprobs(reference, ids)
    out = {"responses": len(ids)}
    for name, fn in (("k1", kl_k1), ("k3", kl_k3)):
        per_token = fn(logp, ref)
        per_response = (per_token * mask).sum(1)
        out[name] = {"response_mean": per_response.mean().item(), "response_std": per_response.std().item(),
                     "token_mean": per_token[mask > 0].mean().item(), "token_std": per_token[mask > 0].std().item()}
    return out
