"""Reinforcement learning for language models with rewards a program checks, from scratch.

A policy ``pi_theta`` writes a response ``o`` (tokens ``o_1 .. o_|o|``) to a prompt ``q``; a reward
``r(q, o)`` scores it (here :func:`aigc_lib.data.arithmetic.verify`: 1 if the final answer is
right, else 0). The pieces, each a short function whose docstring gives its equation:

* test-time compute: :func:`pass_at_k` (the unbiased estimator of Chen et al. 2021) and
  :func:`majority_vote` (self-consistency, Wang et al. 2023);
* a learned reward: :func:`bradley_terry_loss` for a reward model on preference pairs
  (:class:`aigc_lib.models.reward.RewardModel`, :func:`train_reward_model`);
* policy gradients: :func:`reinforce_loss` (REINFORCE with a baseline, Williams 1992) and
  :func:`ppo_clip_loss` (PPO's clipped surrogate, Schulman et al. 2017);
* GRPO (Shao et al. 2024): :func:`group_advantages`, the KL estimators :func:`kl_k1` and
  :func:`kl_k3` (Schulman's note "Approximating KL divergence", 2020), :func:`grpo_loss` and the
  loop :func:`train_grpo`, which samples a group of responses per prompt with
  :func:`aigc_lib.sampling.generate`, scores them, and moves the policy towards the better ones
  while a frozen reference holds it near where it started.

The tests check :func:`grpo_loss` against ``trl``'s ``GRPOTrainer`` (``loss_type="grpo"``).
"""
from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads, generator as seeded_generator, model_device
from aigc_lib.sampling import generate
from aigc_lib.training.loop import check_finite, train_steps


# ----------------------------------------------------------------------------- test-time compute
def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021)::

        pass@k = 1 - C(n - c, k) / C(n, k)

    the probability that ``k`` of the ``n`` samples, drawn without replacement, include a correct
    one. (``1 - (1 - c/n)^k`` is biased low.) Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``,
    which never forms the large binomials.
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if not 1 <= k <= n or c > n:
        raise ValueError(f"need 1 <= k <= n and c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_vote(answers: Sequence[Hashable | None]) -> Hashable | None:
    """The most frequent answer among ``answers`` (self-consistency); ``None`` entries (no answer)
    do not vote; ties go to the answer seen first; ``None`` if nobody answered."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    best = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == best)


def sampled_accuracy(samples: Sequence[Sequence[str]], answers: Sequence[Hashable],
                     extract: Callable[[str], Hashable | None], ks: Sequence[int] = (1, 2, 4, 8, 16)) -> dict:
    """Test-time compute from ``n`` sampled responses per problem (``samples[i]`` answer a problem
    whose right answer is ``answers[i]``; ``extract`` reads a response's answer, ``None`` if it has
    none): ``pass_at_k[k]`` (the unbiased estimator averaged over problems), ``majority_at_k[k]``
    (the share of problems whose :func:`majority_vote` over their first ``k`` samples is right) and
    ``chars`` (mean characters per response: what one sample costs)."""
    if len(samples) != len(answers) or not answers:
        raise ValueError(f"need one list of samples per problem, got {len(samples)} for {len(answers)}")
    n = len(samples[0])
    if n < 1 or any(len(s) != n for s in samples):
        raise ValueError("every problem needs the same number (>= 1) of samples")
    got = [[extract(t) for t in texts] for texts in samples]
    out = {"n": n, "pass_at_k": {}, "majority_at_k": {},
           "chars": sum(len(t) for texts in samples for t in texts) / (n * len(answers))}
    for k in (k for k in ks if k <= n):
        out["pass_at_k"][k] = sum(pass_at_k(n, sum(a == y for a in g), k)
                                  for g, y in zip(got, answers)) / len(answers)
        out["majority_at_k"][k] = sum(majority_vote(g[:k]) == y for g, y in zip(got, answers)) / len(answers)
    return out


# ----------------------------------------------------------------------------- reward model
def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """The reward model's loss on preference pairs (Bradley & Terry 1952; Ouyang et al. 2022)::

        L = -mean log sigmoid(r(x, y_w) - r(x, y_l))

    the negative log-likelihood of the preferences if ``P(y_w > y_l) = sigmoid(r_w - r_l)``.
    Only differences of rewards matter: adding a constant to every reward changes nothing.
    """
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"chosen and rejected rewards come in pairs: shapes {tuple(r_chosen.shape)} "
                         f"and {tuple(r_rejected.shape)}")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def train_reward_model(model: nn.Module, chosen: tuple[torch.Tensor, torch.Tensor],
                       rejected: tuple[torch.Tensor, torch.Tensor], *, steps: int, batch_size: int,
                       lr: float, seed: int = 0, progress: bool = True) -> dict:
    """Fit ``model(ids, mask) -> rewards (B,)`` (e.g. :class:`aigc_lib.models.reward.RewardModel`)
    to pairs packed as ``(ids, mask)`` (:func:`aigc_lib.training.finetune.pack`) with
    :func:`bradley_terry_loss`. Returns ``{"loss": [...], "accuracy": [...]}`` per step, the
    accuracy being the share of the batch's pairs ranked right."""
    (ids_w, mask_w), (ids_l, mask_l) = chosen, rejected
    if len(ids_w) != len(ids_l):
        raise ValueError(f"got {len(ids_w)} chosen and {len(ids_l)} rejected responses; they come in pairs")
    device = model_device(model)
    g = seeded_generator(seed)
    accuracy: list[float] = []

    def batches():
        while True:
            yield torch.randint(len(ids_w), (batch_size,), generator=g)

    def loss_fn(m: nn.Module, i: torch.Tensor) -> torch.Tensor:
        r_w = m(ids_w[i].to(device), mask_w[i].to(device))
        r_l = m(ids_l[i].to(device), mask_l[i].to(device))
        accuracy.append((r_w > r_l).float().mean().item())
        return bradley_terry_loss(r_w, r_l)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    history = train_steps(model, batches(), loss_fn, steps=steps, optimizer=optimizer, grad_clip=1.0,
                          desc="reward model", progress=progress)
    return {**history, "accuracy": accuracy}


# ----------------------------------------------------------------------------- policy gradients
def _check_tokens(mask: torch.Tensor, *tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.shape != mask.shape:
            raise ValueError(f"per-token tensors must all be B x T like the mask {tuple(mask.shape)}, "
                             f"got {tuple(t.shape)}")


def _advantages_per_token(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if advantages.dim() == 1:
        if len(advantages) != mask.size(0):
            raise ValueError(f"one advantage per response: got {len(advantages)} for {mask.size(0)} responses")
        return advantages[:, None]
    if advantages.shape != mask.shape:
        raise ValueError(f"advantages must be (B,) or B x T like the mask, got {tuple(advantages.shape)}")
    return advantages


def reinforce_loss(logp: torch.Tensor, rewards: torch.Tensor, baseline: torch.Tensor | float | None = None
                   ) -> torch.Tensor:
    """REINFORCE with a baseline (Williams 1992): the loss whose gradient is the policy gradient

        grad J = E[(r - b) grad log pi(o | q)],     L = -mean((r - b) * log pi(o | q))

    ``logp`` is each response's log-probability (B,), ``rewards`` its reward (B,). Any baseline
    ``b`` that does not depend on the response leaves the gradient unbiased and can shrink its
    variance; ``None`` uses the batch's mean reward. ``r - b`` is treated as a constant.
    """
    if logp.shape != rewards.shape or logp.dim() != 1:
        raise ValueError(f"logp and rewards are one number per response (B,), got {tuple(logp.shape)} "
                         f"and {tuple(rewards.shape)}")
    b = rewards.mean() if baseline is None else baseline
    return -((rewards - b).detach() * logp).mean()


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor | None = None, epsilon: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017), per token, averaged over the response tokens::

        rho_t = pi_theta(o_t | q, o_<t) / pi_old(o_t | q, o_<t) = exp(logp - old_logp)
        L = -mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)

    ``logp``, ``old_logp`` are B x T per-token log-probabilities (the old ones from the policy that
    sampled), ``advantages`` (B,) or B x T. The clip removes the incentive to move ``rho`` beyond
    ``1 +- eps``: samples can be reused for several steps without the policy running away.
    """
    mask = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    _check_tokens(mask, logp, old_logp)
    adv = _advantages_per_token(advantages, mask)
    rho = torch.exp(logp - old_logp)
    surrogate = torch.min(rho * adv, torch.clamp(rho, 1 - epsilon, 1 + epsilon) * adv)
    return -(surrogate * mask).sum() / mask.sum().clamp(min=1.0)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4
                     ) -> torch.Tensor:
    """GRPO's advantages (Shao et al. 2024): each response's reward against its group's,

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)

    where a group is the ``group_size`` responses sampled for one prompt (consecutive entries of
    ``rewards``) and std is the sample standard deviation (Bessel's n - 1, as ``trl`` computes it).
    The group mean is the baseline, so no value network is needed; a group whose responses all
    score the same gets advantage 0 and teaches nothing. ``scale=False`` drops the division
    (Dr. GRPO, Liu et al. 2025).
    """
    if rewards.dim() != 1 or group_size < 2 or len(rewards) % group_size:
        raise ValueError(f"rewards must be (B,) with B a multiple of group_size >= 2, got shape "
                         f"{tuple(rewards.shape)} and group_size={group_size}")
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (r.std(dim=1, keepdim=True) + eps)
    return centred.view(-1)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The k1 estimator of ``KL(pi || pi_ref)`` per sampled token: ``log pi - log pi_ref``.

    Unbiased for tokens sampled from ``pi``, but each term can be negative and its variance is high.
    """
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The k3 estimator (Schulman 2020) per sampled token, GRPO's KL term: with ``rho = pi_ref / pi``,

        k3 = rho - log(rho) - 1 = exp(ref_logp - logp) - (ref_logp - logp) - 1

    Unbiased (``E_pi[rho] = 1``), never negative, and of lower variance than k1 when the two
    policies are close.
    """
    log_rho = ref_logp - logp
    return torch.exp(log_rho) - log_rho - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, epsilon_low: float = 0.2,
              epsilon_high: float | None = None, beta: float = 0.04, kl_correction: bool = False
              ) -> tuple[torch.Tensor, dict]:
    """GRPO's loss (Shao et al. 2024), per token ``t`` of response ``i`` of a group::

        rho_it = exp(logp_it - old_logp_it)
        l_it   = -min(rho_it A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) A_i) + beta * k3_it
        L      = mean_i (1 / |o_i|) sum_t l_it

    with ``k3_it`` = :func:`kl_k3` (``logp``, ``ref_logp``): the policy's KL to the frozen reference,
    inside the loss (PPO for language models put it in the reward instead). Every response weighs
    the same whatever its length (``trl``'s ``loss_type="grpo"``). ``logp``, ``old_logp`` and
    ``ref_logp`` are B x T per-token log-probabilities of the sampled tokens, ``mask`` is 1 on the
    response tokens, ``advantages`` is (B,) (:func:`group_advantages`). ``beta=0`` drops the KL term
    (``ref_logp`` may then be ``None``).

    ``kl_correction=True`` weighs each ``k3_it`` by ``rho_it`` (with its gradient), as ``trl`` does by
    default (``use_bias_correction_kl``): the responses were sampled from ``pi_old``, and
    ``E_old[rho k3] = E_theta[k3]``. Even on-policy (``rho = 1``) it changes the gradient: it adds
    ``k3 grad log pi``, the score-function term that makes the gradient of the estimate the
    gradient of the KL itself. Returns the loss and ``{"kl": mean k3 over response tokens,
    "clip_fraction": share of tokens whose ratio the clip held}``.
    """
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    if not (0 <= epsilon_low < 1 and epsilon_high >= 0 and beta >= 0):
        raise ValueError(f"need 0 <= epsilon_low < 1, epsilon_high >= 0, beta >= 0; got {epsilon_low}, "
                         f"{epsilon_high}, {beta}")
    mask = mask.to(logp.dtype)
    _check_tokens(mask, logp, old_logp)
    adv = _advantages_per_token(advantages, mask)
    rho = torch.exp(logp - old_logp)
    rho_clipped = torch.clamp(rho, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(rho * adv, rho_clipped * adv)
    stats = {}
    if beta != 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference's log-probabilities ref_logp")
        _check_tokens(mask, ref_logp)
        k3 = kl_k3(logp, ref_logp)
        per_token = per_token + beta * (k3 * rho if kl_correction else k3)
        stats["kl"] = ((k3 * mask).sum() / mask.sum().clamp(min=1.0)).item()
    elif ref_logp is not None:
        stats["kl"] = ((kl_k3(logp, ref_logp) * mask).sum() / mask.sum().clamp(min=1.0)).item()
    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()
    held = ((rho < 1 - epsilon_low) & (adv < 0)) | ((rho > 1 + epsilon_high) & (adv > 0))
    stats["clip_fraction"] = ((held.to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1.0)).item()
    return loss, stats


# ----------------------------------------------------------------------------- sampling and scoring
def token_logprobs(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """``log p(ids[:, t+1] | ids[:, :t+1])`` for every position, B x (T-1)."""
    logits, _ = model(ids[:, :-1])
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, ids[:, 1:, None]).squeeze(2)


@torch.no_grad()
def sample_groups(model: nn.Module, tokenizer, prompts: Sequence[str], group_size: int, max_new_tokens: int, *,
                  temperature: float = 1.0, stop: str = "\n", generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``group_size`` sampled responses to each prompt, with :func:`aigc_lib.sampling.generate`
    (prompts of the same length in one batch).

    Returns ``ids`` (B x T, B = len(prompts) * group_size, prompt + response, right-padded with
    the stop token; the responses to prompt ``i`` are rows ``i * group_size`` to
    ``(i + 1) * group_size - 1``), ``mask`` (B x (T-1), 1 where the *target* ``ids[:, t+1]`` is a
    response token, the stop token included) and the responses as text (cut after the stop)."""
    device = model_device(model)
    stop_id = tokenizer.encode(stop)[0]
    encoded = [tokenizer.encode(p) for p in prompts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(encoded):
        by_length.setdefault(len(p), []).append(i)
    responses: list[list[int]] = [[] for _ in range(len(prompts) * group_size)]
    for length, which in sorted(by_length.items()):
        new = min(max_new_tokens, model.config.block_size - length + 1)
        out = generate(model, torch.tensor([encoded[i] for i in which], device=device), new, do_sample=True,
                       temperature=temperature, num_return_sequences=group_size, eos_token_id=stop_id,
                       generator=generator)
        for r, row in enumerate(out[:, length:].tolist()):
            responses[which[r // group_size] * group_size + r % group_size] = \
                row[:row.index(stop_id) + 1] if stop_id in row else row
    rows = [encoded[k // group_size] + r for k, r in enumerate(responses)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), stop_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width - 1)
    for k, (row, response) in enumerate(zip(rows, responses)):
        ids[k, :len(row)] = torch.tensor(row)
        mask[k, len(row) - len(response) - 1:len(row) - 1] = 1.0
    return ids.to(device), mask.to(device), [tokenizer.decode(r) for r in responses]


@dataclass
class GRPOConfig:
    """The settings of :func:`train_grpo`."""
    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 8  # G responses sampled per prompt
    max_new_tokens: int = 48
    temperature: float = 1.0
    lr: float = 1e-4
    warmup_steps: int = 0  # the learning rate rises linearly over these first steps (Adam's first steps are large)
    beta: float = 0.04  # weight of the KL to the reference
    kl_correction: bool = False  # weigh the KL term by the ratio, as trl does (see grpo_loss)
    epsilon: float = 0.2  # the clip range of the ratio
    updates_per_batch: int = 1  # gradient steps on each sampled batch (mu in the GRPO paper)
    grad_clip: float = 1.0
    eval_interval: int = 0  # call `evaluate` every this many steps (0: only before and after)
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"GRPOConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        for name in ("steps", "prompts_per_step", "max_new_tokens", "updates_per_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"GRPOConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages compare responses within a group), "
                             f"got {self.group_size}")
        if self.lr <= 0 or self.beta < 0 or not 0 < self.epsilon < 1 or self.temperature <= 0:
            raise ValueError("need lr > 0, beta >= 0, 0 < epsilon < 1 and temperature > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def train_grpo(policy: nn.Module, tokenizer, prompts: Callable[[int, torch.Generator], Sequence[Any]],
               reward: Callable[[str, Any], float], config: GRPOConfig, *, reference: nn.Module | None = None,
               evaluate: Callable[[nn.Module], float] | None = None, progress: bool = True) -> dict:
    """GRPO on ``policy`` in place, with a verifiable reward.

    Every step: ``prompts(step, generator)`` gives ``prompts_per_step`` items with a ``.prompt``
    (e.g. :class:`aigc_lib.data.arithmetic.Problem`); :func:`sample_groups` samples ``group_size``
    responses to each; ``reward(text, item)`` scores them; :func:`group_advantages` compares each
    with its group; then ``updates_per_batch`` AdamW steps on :func:`grpo_loss`, with the policy's
    log-probabilities at sampling time as ``old_logp`` and the frozen ``reference`` (default: a
    copy of the policy as it starts) for the KL term.

    Returns the history: per step ``reward`` (mean), ``kl`` (k3) and ``kl_k1`` (means over response
    tokens), ``loss``, ``clip_fraction``, ``solved_groups`` and ``failed_groups`` (share of groups all
    right / all wrong: no signal), ``response_tokens`` and ``seconds``; and ``eval`` as
    ``[(step, evaluate(policy))]`` before training, every ``eval_interval`` steps and at the end.
    """
    device = model_device(policy)
    reference = copy.deepcopy(policy) if reference is None else reference
    reference.eval().requires_grad_(False)
    g = seeded_generator(config.seed)
    sampler = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (config.warmup_steps + 1)))
    keys = ("reward", "kl", "kl_k1", "loss", "clip_fraction", "solved_groups", "failed_groups",
            "response_tokens", "seconds")
    history: dict[str, Any] = {k: [] for k in keys}
    history["eval"] = [(0, evaluate(policy))] if evaluate is not None else []
    G = config.group_size
    bar = tqdm(range(config.steps), desc="GRPO", disable=not progress, leave=False)
    for step in bar:
        fit_threads()  # the cores other processes leave free (config.py)
        start = time.perf_counter()
        items = list(prompts(step, g))
        ids, mask, texts = sample_groups(policy, tokenizer, [it.prompt for it in items], G,
                                         config.max_new_tokens, temperature=config.temperature,
                                         generator=sampler)
        rewards = torch.tensor([reward(t, items[i // G]) for i, t in enumerate(texts)], device=device)
        advantages = group_advantages(rewards, G)
        with torch.no_grad():
            ref_logp = token_logprobs(reference, ids)
            old_logp = token_logprobs(policy, ids) if config.updates_per_batch > 1 else None
        policy.train()
        for _ in range(config.updates_per_batch):
            logp = token_logprobs(policy, ids)
            loss, stats = grpo_loss(logp, logp.detach() if old_logp is None else old_logp, ref_logp,
                                    advantages, mask, epsilon_low=config.epsilon, beta=config.beta,
                                    kl_correction=config.kl_correction)
            check_finite(loss, "GRPO loss", step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
        warmup.step()
        policy.eval()
        per_group = rewards.view(-1, G)
        history["reward"].append(rewards.mean().item())
        history["kl"].append(stats["kl"])
        history["kl_k1"].append(((kl_k1(logp.detach(), ref_logp) * mask).sum() / mask.sum()).item())
        history["loss"].append(loss.item())
        history["clip_fraction"].append(stats["clip_fraction"])
        history["solved_groups"].append((per_group.min(1).values == per_group.max(1).values).logical_and(
            per_group.max(1).values > 0).float().mean().item())
        history["failed_groups"].append((per_group.max(1).values <= 0).float().mean().item())
        history["response_tokens"].append(int(mask.sum().item()))
        history["seconds"].append(time.perf_counter() - start)
        if progress:
            bar.set_postfix(reward=f"{history['reward'][-1]:.2f}", kl=f"{stats['kl']:.4f}")
        last = step == config.steps - 1
        if evaluate is not None and (last or (config.eval_interval and (step + 1) % config.eval_interval == 0)):
            history["eval"].append((step + 1, evaluate(policy)))
    bar.close()
    return history
