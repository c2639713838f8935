"""The reasoning chapter's library: the arithmetic task and its verifier, test-time compute
(pass@k, majority vote), the reward model's loss, policy-gradient losses, and GRPO against trl."""
import itertools
import math
import random
import re
import types
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from aigc_lib.data import arithmetic as ar
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.models.reward import RewardModel
from aigc_lib.training.finetune import pack, train_sft
from aigc_lib.training.rl import (GRPOConfig, bradley_terry_loss, group_advantages, grpo_loss, kl_k1, kl_k3,
                                  majority_vote, pass_at_k, ppo_clip_loss, reinforce_loss, sample_groups,
                                  sampled_accuracy, token_logprobs, train_grpo, train_reward_model)

ROOT = Path(__file__).resolve().parents[1]


def tiny_gpt(seed=0, block_size=48, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=block_size, vocab_size=len(ar.VOCAB), n_layer=1, n_head=2, n_embd=32, **kw))


# ----------------------------------------------------------------------------- the task
@pytest.mark.parametrize("op", ar.OPS)
def test_every_generated_problem_verifies_in_both_formats(op):
    items = ar.problems(300, range(1, 9), split=None, op=op, seed=3)
    for p in items:
        assert p.answer == (p.a + p.b if op == "+" else p.a * p.b)
        for fmt in ar.FORMATS:
            text = ar.response(p, fmt)
            assert text.endswith("\n") and set(p.prompt + text) <= set(ar.VOCAB)
            assert ar.extract_answer(text) == p.answer and ar.verify(text, p) == 1.0
            assert ar.verify(text, p.answer + 1) == 0.0


def test_worked_steps_carry_and_rebuild_the_answer():
    assert ar.worked(ar.Problem(357, 68)) == "7+8+0=15,5+6+1=12,3+0+1=4#425\n"
    assert ar.worked(ar.Problem(987, 6, "*")) == "7*6+0=42,8*6+4=52,9*6+5=59#5922\n"
    assert ar.direct(ar.Problem(99, 9)) == "#108\n"
    for p in ar.problems(200, range(1, 7), split=None, seed=1) + ar.problems(50, [4], None, "*", seed=1):
        s = ar.steps(p)
        assert len(s) == p.size
        digits = [str(v % 10) for *_, v in s[:-1]]  # every step leaves one digit, the last all of it
        assert int(str(s[-1][3]) + "".join(reversed(digits))) == p.answer


@pytest.mark.parametrize("text", ["", "\n", "#", "#\n", "425", "#425#425\n", "#42a5\n", "#-425\n", "# 425\n",
                                  "#0425\n", "7+8+0=15#4 25", "##425", "#425 \n", "\u0663\u0664\u0665",
                                  "#\u0664\u0662\u0665", None, 425, b"#425"])
def test_malformed_outputs_score_zero_and_never_raise(text):
    assert ar.verify(text, ar.Problem(357, 68)) == 0.0


def test_the_verifier_never_raises_on_random_strings_and_reads_only_the_first_line():
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice(ar.VOCAB + "ab -") for _ in range(rng.randint(0, 30)))
        assert ar.verify(text, 425) in (0.0, 1.0)
    assert ar.verify("#425\n#426\n", 425) == 1.0  # what follows the end of the response is not read
    assert ar.verify("1+2+0=3#425", 425) == 1.0  # a response cut before its newline still counts


def test_splits_are_fixed_by_the_problem_and_disjoint():
    train = ar.problems(500, [2, 3], "train", seed=0)
    test = ar.problems(100, [2, 3], "test", seed=5)
    assert len(set(train)) == 500 and not set(train) & set(test)
    assert all(ar.split_of(p) == "train" for p in train) and all(ar.split_of(p) == "test" for p in test)
    everything = ar.problems(2000, [3], None, seed=2)
    shares = {s: sum(ar.split_of(p) == s for p in everything) / 2000 for s in ar.SPLITS}
    assert 0.07 < shares["test"] < 0.13 and 0.07 < shares["validation"] < 0.13
    assert ar.problems(20, [4], "test", seed=9) == ar.problems(20, [4], "test", seed=9)
    assert [p.size for p in ar.problems(6, [5, 6], None)] == [5, 6, 5, 6, 5, 6]


def test_task_errors_are_clear():
    with pytest.raises(ValueError, match="longer number first"):
        ar.Problem(3, 45)
    with pytest.raises(ValueError, match="one digit"):
        ar.Problem(3, 12, "*")
    with pytest.raises(ValueError, match="format must be"):
        ar.response(ar.Problem(1, 2), "cot")
    with pytest.raises(ValueError, match="found only"):
        ar.problems(100, [1], "test")
    assert ar.tokenizer().encode("\n")[0] == 0 and ar.tokenizer().vocab_size == len(ar.VOCAB)


# ----------------------------------------------------------------------------- test-time compute
@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_unbiased_pass_at_k_equals_brute_force_enumeration(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    assert pass_at_k(200, 1, 1) == pytest.approx(1 / 200) and pass_at_k(200, 0, 50) == 0.0
    assert pass_at_k(100, 10, 10) > 1 - (1 - 0.1) ** 10  # the naive estimate is biased low


def test_pass_at_k_errors():
    for bad in [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3.0, 1, 1), (-1, 0, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_majority_vote():
    assert majority_vote([3, 5, 5, None, 3, 5]) == 5
    assert majority_vote([None, 7, 3, 3, 7]) == 7  # a tie goes to the answer seen first
    assert majority_vote([None, None]) is None and majority_vote([]) is None


# ----------------------------------------------------------------------------- losses by hand
def test_bradley_terry_loss_by_hand():
    r_w, r_l = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2
    assert bradley_terry_loss(r_w, r_l).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(r_w + 5, r_l + 5).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="pairs"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    adv = group_advantages(rewards, 4)
    std = math.sqrt((2 * 0.25 + 2 * 0.25) / 3)  # the sample std of {1, 0, 0, 1}
    torch.testing.assert_close(adv[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    torch.testing.assert_close(adv[4:8], torch.zeros(4))  # all right: no signal
    std3 = math.sqrt((3 * 0.25 ** 2 + 0.75 ** 2) / 3)
    torch.testing.assert_close(adv[8:], torch.tensor([-0.25, -0.25, -0.25, 0.75]) / (std3 + 1e-4))
    torch.testing.assert_close(group_advantages(rewards, 4, scale=False)[8:], torch.tensor([-0.25, -0.25, -0.25, 0.75]))
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(rewards, 5)


def test_kl_estimators_are_unbiased_and_k3_is_never_negative():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(20, generator=g).softmax(0), torch.randn(20, generator=g).softmax(0)
    kl = (p * (p.log() - q.log())).sum()
    # the expectation over tokens drawn from p, computed exactly
    torch.testing.assert_close((p * kl_k1(p.log(), q.log())).sum(), kl)
    torch.testing.assert_close((p * kl_k3(p.log(), q.log())).sum(), kl)
    assert (kl_k3(p.log(), q.log()) >= 0).all() and (kl_k1(p.log(), q.log()) < 0).any()
    assert kl_k3(p.log(), p.log()).abs().max() == 0


def test_reinforce_gradient_is_the_advantage_times_the_score():
    logp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 1.0])
    reinforce_loss(logp, rewards).backward()
    torch.testing.assert_close(logp.grad, -(rewards - rewards.mean()) / 3)
    logp.grad = None
    reinforce_loss(logp, rewards, baseline=0.5).backward()
    torch.testing.assert_close(logp.grad, -(rewards - 0.5) / 3)


def test_ppo_clip_keeps_the_ratio_near_one():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[0.5, 0.9, 1.1, 1.5]])).requires_grad_()
    adv = torch.tensor([1.0])
    loss = ppo_clip_loss(logp, old, adv, epsilon=0.2)
    assert loss.item() == pytest.approx(-(0.5 + 0.9 + 1.1 + 1.2) / 4, rel=1e-6)
    loss.backward()
    # with A > 0: no gradient past 1 + eps; below 1 - eps the unclipped term is the min and keeps its gradient
    torch.testing.assert_close(logp.grad, -torch.tensor([[0.5, 0.9, 1.1, 0.0]]) / 4)


def test_grpo_loss_on_policy_without_kl_is_reinforce_per_token():
    g = torch.Generator().manual_seed(1)
    logp = (-torch.rand(4, 5, generator=g)).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.float)
    adv = torch.tensor([1.0, -1.0, 0.5, 0.0])
    loss, stats = grpo_loss(logp, logp.detach(), None, adv, mask, beta=0.0)
    loss.backward()
    expected = -(adv[:, None] * mask / mask.sum(1, keepdim=True)) / 4
    torch.testing.assert_close(logp.grad, expected)
    assert stats["clip_fraction"] == 0 and "kl" not in stats
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp.detach(), None, adv, mask, beta=0.1)


# ----------------------------------------------------------------------------- GRPO against trl
def locked_version(package: str) -> str | None:
    lock = ROOT / "requirements.lock"
    if not lock.exists():
        return None
    match = re.search(rf"^{package}==(\S+)", lock.read_text(), flags=re.M)
    return match.group(1) if match else None


def trl_grpo_loss(logp, old_logp, ref_logp, advantages, mask, epsilon, beta, kl_correction, tmp_path):
    """trl's GRPO loss (``GRPOTrainer._compute_loss`` with ``loss_type="grpo"``) on these per-token
    log-probabilities: a stand-in for the policy's forward pass returns ``logp``; the old and the
    reference log-probabilities come in the inputs, as ``_generate_and_score_completions`` leaves
    them. The settings are read from a real ``GRPOConfig``."""
    trl = pytest.importorskip("trl")
    pin = locked_version("trl")
    if pin is None or trl.__version__ != pin:
        pytest.skip(f"the test drives trl's private GRPOTrainer._compute_loss, written against the locked "
                    f"trl=={pin}; this environment has trl {trl.__version__}")
    args = trl.GRPOConfig(output_dir=str(tmp_path), loss_type="grpo", beta=beta, epsilon=epsilon,
                          report_to="none", use_cpu=True, activation_checkpointing=False,
                          use_bias_correction_kl=kl_correction)
    B, T = logp.shape
    identity = types.SimpleNamespace(gather=lambda t: t, gather_for_metrics=lambda t: t,
                                     reduce=lambda t, reduction="sum": t, num_processes=1)
    trainer = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), args=args, accelerator=identity,
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=args.top_entropy_quantile, off_policy_mask_threshold=args.off_policy_mask_threshold,
        importance_sampling_level=args.importance_sampling_level, loss_type=args.loss_type, beta=args.beta,
        epsilon_low=args.epsilon, epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        use_vllm=False, vllm_importance_sampling_correction=False, current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)})
    inputs = {"prompt_ids": torch.zeros(B, 2, dtype=torch.long), "prompt_mask": torch.ones(B, 2),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": advantages, "ref_per_token_logps": ref_logp}
    if old_logp is not None:
        inputs["old_per_token_logps"] = old_logp
    loss = trl.GRPOTrainer._compute_loss(trainer, trainer.model, inputs)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize("beta, kl_correction", [(0.0, False), (0.04, False), (0.5, False), (0.04, True), (0.5, True)])
@pytest.mark.parametrize("clipped", [False, True])
def test_grpo_loss_matches_trl(beta, kl_correction, clipped, tmp_path):
    g = torch.Generator().manual_seed(int(10 * beta) + clipped)
    B, T, epsilon = 8, 6, 0.2
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (B, 1), generator=g)).float()
    rewards = torch.randint(0, 2, (B,), generator=g).float()
    advantages = group_advantages(rewards, 4)
    base = -2 * torch.rand(B, T, generator=g)
    ref_logp = base + 0.3 * torch.randn(B, T, generator=g)
    # clipped: the policy moved since it sampled, by ratios well outside 1 +- epsilon
    old_logp = base + 0.5 * torch.randn(B, T, generator=g) if clipped else None
    ours_logp, trl_logp = base.clone().requires_grad_(), base.clone().requires_grad_()
    ours, stats = grpo_loss(ours_logp, ours_logp.detach() if old_logp is None else old_logp, ref_logp,
                            advantages, mask, epsilon_low=epsilon, beta=beta, kl_correction=kl_correction)
    theirs, metrics = trl_grpo_loss(trl_logp, old_logp, ref_logp, advantages, mask, epsilon, beta, kl_correction,
                                    tmp_path)
    torch.testing.assert_close(ours, theirs)
    ours.backward(), theirs.backward()
    torch.testing.assert_close(ours_logp.grad, trl_logp.grad)
    assert (stats["clip_fraction"] > 0.2) == clipped
    assert stats["clip_fraction"] == pytest.approx(metrics["clip_ratio/region_mean"][0], abs=1e-6)
    if beta and not kl_correction:
        assert stats["kl"] == pytest.approx(metrics["kl"][0], rel=1e-5)


def test_the_kl_correction_adds_the_score_function_term_on_policy():
    g = torch.Generator().manual_seed(3)
    logp, ref = -torch.rand(2, 3, generator=g), -torch.rand(2, 3, generator=g)
    mask, adv = torch.ones(2, 3), torch.zeros(2)
    grads = []
    for correction in (False, True):
        x = logp.clone().requires_grad_()
        grpo_loss(x, x.detach(), ref, adv, mask, beta=1.0, kl_correction=correction)[0].backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1] - grads[0], kl_k3(logp, ref) / 6)


def test_the_teacher_slips_on_its_share_of_problems_to_the_same_wrong_answer_in_both_formats():
    items = ar.problems(3000, [2, 3, 4], "train", seed=0)
    wrong = [p for p in items if not ar.verify(ar.teacher(p, "worked", 0.3, seed=1), p)]
    assert abs(len(wrong) / len(items) - 0.3) < 0.03  # a hash decides: close to the rate asked
    for p in items:
        worked, direct = ar.teacher(p, "worked", 0.3, seed=1), ar.teacher(p, "direct", 0.3, seed=1)
        assert ar.extract_answer(worked) == ar.extract_answer(direct)  # one teacher, two formats
        assert ar.teacher(p, "worked", 0.0) == ar.worked(p)
    p = wrong[0]  # a slipped trace is self-consistent: its steps spell its (wrong) answer
    steps = [tuple(map(int, re.split(r"[+*=]", step))) for step in ar.teacher(p, "worked", 0.3, 1)
             .split("#")[0].split(",")]
    assert sum(x + y + c != s for x, y, c, s in steps) == 1  # one step is off by one
    assert ar.answer_of(steps) == ar.extract_answer(ar.teacher(p, "worked", 0.3, 1)) != p.answer
    assert sum(ar.teacher(p, "worked", 0.3, seed=2) != ar.worked(p) for p in items) != len(wrong)  # seed moves it


def test_slipped_steps_carry_the_slip_forward():
    p = ar.Problem(95, 7)  # 5+7=12, 9+0+1=10 -> 102; slip at step 0 by -1: 11, then 9+0+1=10 -> 101
    assert ar.slipped_steps(p, 0, -1) == [(5, 7, 0, 11), (9, 0, 1, 10)]
    assert ar.answer_of(ar.slipped_steps(p, 0, -1)) == 101
    assert ar.slipped_steps(p, 0, 0) == ar.steps(p)
    with pytest.raises(ValueError, match="step 0..1"):
        ar.slipped_steps(p, 2, 1)
    with pytest.raises(ValueError, match="probability"):
        ar.teacher(p, "worked", 1.5)


def test_sampled_accuracy_by_hand():
    samples = [["#3\n", "#4\n", "#3\n", "oops"], ["#1\n"] * 4, ["#7\n", "#7", "#5\n", "#5\n"]]
    out = sampled_accuracy(samples, [3, 2, 5], ar.extract_answer, ks=(1, 2, 4, 8))
    assert out["n"] == 4 and set(out["pass_at_k"]) == {1, 2, 4}  # k above n is left out
    assert out["pass_at_k"][1] == pytest.approx((2 / 4 + 0 + 2 / 4) / 3)
    assert out["pass_at_k"][4] == pytest.approx(2 / 3)
    assert out["majority_at_k"][1] == pytest.approx(1 / 3)  # first samples: 3 right, 1 and 7 wrong
    assert out["majority_at_k"][4] == pytest.approx(1 / 3)  # 7 and 5 tie 2-2: the first seen (7) wins
    assert out["chars"] == pytest.approx(sum(len(t) for row in samples for t in row) / 12)
    with pytest.raises(ValueError, match="one list of samples per problem"):
        sampled_accuracy(samples, [3, 2], ar.extract_answer)


# ----------------------------------------------------------------------------- tiny runs
def test_a_tiny_sft_run_lowers_the_worked_solution_loss():
    tok = ar.tokenizer()
    items = ar.problems(64, [2, 3], "train", seed=0)
    ids, mask = pack(tok, *ar.examples(items, "worked"), length=ar.max_length(items, "worked"))
    model = tiny_gpt(block_size=ids.size(1))
    loss = train_sft(model, ids, mask, steps=80, batch_size=16, lr=3e-3, progress=False)["loss"]
    assert sum(loss[-5:]) / 5 < 0.7 * sum(loss[:5]) / 5


def test_sft_with_evaluation_is_the_same_run_evaluated_along_the_way():
    tok = ar.tokenizer()
    items = ar.problems(32, [2], "train", seed=0)
    ids, mask = pack(tok, *ar.examples(items, "worked"), length=ar.max_length(items, "worked"))
    kw = dict(steps=10, batch_size=8, lr=3e-3, progress=False, warmup_steps=3, weight_decay=0.1, final_lr=0.1)
    plain = train_sft(tiny_gpt(block_size=ids.size(1)), ids, mask, **kw)
    seen = []
    evaluated = train_sft(tiny_gpt(block_size=ids.size(1)), ids, mask, **kw, eval_interval=4,
                          evaluate=lambda m: seen.append(m.training) or len(seen))
    assert evaluated["loss"] == pytest.approx(plain["loss"])  # same batches, same schedule
    assert evaluated["eval"] == [(4, 1), (8, 2), (10, 3)] and seen == [False] * 3


def test_the_reward_model_learns_to_rank_right_answers_above_wrong_ones():
    tok = ar.tokenizer()
    items = ar.problems(64, [2], "train", seed=0)
    prompts = [p.prompt for p in items]
    right = [ar.direct(p) for p in items]
    wrong = [f"#{p.answer + 1 + i % 3}\n" for i, p in enumerate(items)]
    length = max(len(p) + len(r) for p, r in zip(prompts, wrong + right))
    chosen, rejected = pack(tok, prompts, right, length), pack(tok, prompts, wrong, length)
    torch.manual_seed(0)
    model = RewardModel(GPTConfig(block_size=length, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32))
    assert model(*chosen).abs().max() == 0  # the head starts at zero: every pair is a coin toss
    history = train_reward_model(model, chosen, rejected, steps=60, batch_size=32, lr=3e-3, progress=False)
    assert sum(history["loss"][-5:]) / 5 < 0.8 * math.log(2)
    assert sum(history["accuracy"][-5:]) / 5 > 0.7


def test_sample_groups_masks_the_responses_up_to_their_stop():
    tok = ar.tokenizer()
    model = tiny_gpt(block_size=24)
    ids, mask, texts = sample_groups(model, tok, ["12+3:", "7+1:"], 3, 10, generator=torch.Generator().manual_seed(0))
    assert ids.shape[0] == 6 and mask.shape == (6, ids.size(1) - 1) and len(texts) == 6
    for i, text in enumerate(texts):
        prompt = ["12+3:", "7+1:"][i // 3]
        n = int(mask[i].sum())
        assert n == len(text) and tok.decode(ids[i, len(prompt):len(prompt) + n].tolist()) == text
        assert mask[i, :len(prompt) - 1].sum() == 0
        assert text.endswith("\n") or len(text) == 10
    logp = token_logprobs(model, ids)
    assert logp.shape == mask.shape and (logp <= 0).all()


def test_a_tiny_grpo_run_raises_its_reward():
    """A random tiny GPT, rewarded for answering at once (a response that starts with '#'): GRPO
    raises the probability of that first token, and the KL to the frozen start grows from 0."""
    tok = ar.tokenizer()
    model = tiny_gpt(seed=1, block_size=16)
    items = ar.problems(16, [2], "train", seed=0)
    hash_id = tok.encode("#")[0]

    @torch.no_grad()
    def p_hash(m):
        ids = torch.tensor([tok.encode(p.prompt) for p in items if len(p.prompt) == 5])
        return m(ids)[0][:, -1].softmax(-1)[:, hash_id].mean().item()

    config = GRPOConfig(steps=15, prompts_per_step=4, group_size=8, max_new_tokens=4, lr=1e-2, beta=0.01, seed=0)
    history = train_grpo(model, tok, lambda step, g: items[4 * (step % 4):4 * (step % 4) + 4],
                         lambda text, p: float(text.startswith("#")), config, evaluate=p_hash, progress=False)
    (_, before), (_, after) = history["eval"][0], history["eval"][-1]
    assert after > before + 0.3
    assert sum(history["reward"][-3:]) / 3 > sum(history["reward"][:3]) / 3 + 0.2
    assert history["kl"][0] == pytest.approx(0, abs=1e-6) and history["kl"][-1] > 0
    assert len(history["seconds"]) == 15 and all(n > 0 for n in history["response_tokens"])


def test_grpo_config_errors():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="steps"):
        GRPOConfig(steps=0)


def test_the_reward_is_read_at_the_last_response_token_whatever_the_padding():
    tok = ar.tokenizer()
    torch.manual_seed(0)
    model = RewardModel(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    torch.nn.init.normal_(model.head.weight)
    ids, mask = pack(tok, ["12+3:", "12+3:"], ["#15\n", "#15\n"], 12)
    ids[1, 10:] = 5  # other padding after the response
    r = model(ids, mask)
    assert r.shape == (2,) and r[0] == r[1]
    shorter, m2 = pack(tok, ["12+3:"], ["#15\n"], 9)
    torch.testing.assert_close(model(shorter, m2), r[:1])


def test_grpo_with_several_updates_per_batch_clips_the_later_ones():
    tok = ar.tokenizer()
    model = tiny_gpt(seed=2, block_size=16)
    items = ar.problems(8, [2], "train", seed=1)
    config = GRPOConfig(steps=3, prompts_per_step=4, group_size=4, max_new_tokens=4, lr=3e-2, beta=0.0,
                        updates_per_batch=4, seed=0)
    history = train_grpo(model, tok, lambda step, g: items[:4], lambda text, p: float(text.startswith("#")),
                         config, progress=False)
    assert max(history["clip_fraction"]) > 0  # by the 4th update the ratio has left 1 +- 0.2 somewhere
    assert all(k >= 0 for k in history["kl"])
