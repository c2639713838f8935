"""Measurements for the reasoning chapter's design: chain of thought, test-time compute, a reward
model and GRPO on a small character-level GPT (3 layers, 96 wide, 347k parameters) on a CPU.

The runs recorded in ``aigc_lib/measurements/reasoning_probe.json`` (key ``<phase>-<tag>``, then
``seed<k>``; each with its settings and conditions: CPU, threads, load average):

    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py sft --seed 0 --tag probe1 --save-model
    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py sft --seed 1 --direct-steps 3000 --tag probe1
    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py sft --seed 0 --n-train 600 --steps 1400 --tag demos600
    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py grpo --seed 0 --steps 1500 --rl-steps 100 \
        --rl-lrs 2e-4 --tag probe1            # (run before --rl-lrs existed, with --rl-lr 2e-4, no warm-up)
    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py grpo --seed 0 --n-train 600 --steps 1500 \
        --rl-steps 150 --rl-lrs 3e-5 1e-4 --rl-warmup 0 --tag demos600
    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py grpo --seed K --n-train 600 --steps 1500 \
        --rl-steps 300 --prompts 16 --rl-lrs 5e-5 --rl-warmup 10 --rl-eval-every 50 --tag demos600-long
    flock /tmp/t/cpu.lock .venv/bin/python tools/reasoning_probe.py rm --seed 0 --tag probe1   # after sft probe1

* ``sft``: the same GPT on direct answers and on worked solutions (the scratchpad of
  :mod:`aigc_lib.data.arithmetic`) for the same number of steps; greedy accuracy on held-out
  problems of the trained sizes (test split) and on longer ones (sizes never trained).
* ``grpo``: SFT on worked solutions to the validation plateau -- the rule, fixed before RL:
  evaluate greedy accuracy on 150 validation-split problems every 100 steps and stop when it has
  not gained 1 point in 3 evaluations (or at ``--steps``) -- then GRPO from it with the verifiable
  reward; pass@1, pass@k, majority vote before and after, the KL (k1 and k3) and its spread.
* ``rm``: a reward model (the SFT GPT with a scalar head) on pairs of right and wrong sampled
  solutions, then best-of-n against it: the learned reward of the chosen sample against its
  verified accuracy (reward hacking, Gao et al. 2023).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigc_lib.config import run_seed, seed_everything, thread_policy  # noqa: E402
from aigc_lib.data import arithmetic as ar  # noqa: E402
from aigc_lib.models.gpt import GPT, GPTConfig  # noqa: E402
from aigc_lib.training.finetune import complete, pack  # noqa: E402
from aigc_lib.training.loop import train_steps  # noqa: E402
from aigc_lib.training.rl import GRPOConfig, majority_vote, pass_at_k, train_grpo  # noqa: E402

OUT = ROOT / "aigc_lib" / "measurements" / "reasoning_probe.json"
TOK = ar.tokenizer()


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def conditions() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": thread_policy(),
            "load_average_1_5_15_min_at_start": load_avg(), "time_utc": time.strftime("%Y-%m-%d %H:%M:%S",
                                                                                         time.gmtime())}


def train_set(n: int, sizes: list[int], seed: int) -> list[ar.Problem]:
    """``n`` distinct training problems, sizes in turn; size 1 contributes what its split holds."""
    small = [p for p in (ar.Problem(a, b) for a in range(10) for b in range(10)) if ar.split_of(p) == "train"]
    rest = ar.problems(n - (len(small) if 1 in sizes else 0), [s for s in sizes if s > 1], "train", seed=seed)
    return (small if 1 in sizes else []) + rest


def model_config(args) -> GPTConfig:
    return GPTConfig(block_size=args.block, vocab_size=TOK.vocab_size, n_layer=args.layers, n_head=4,
                     n_embd=args.embd, dropout=0.0)


def accuracy(model, items, fmt_tokens: int) -> tuple[float, float]:
    """Greedy accuracy and mean response characters."""
    outs = complete(model, TOK, [p.prompt for p in items], fmt_tokens)
    return (sum(ar.verify(o[0], p) for o, p in zip(outs, items)) / len(items),
            sum(len(o[0]) for o in outs) / len(items))


def sft(model, items, fmt, steps, lr, batch, seed, eval_fn=None, eval_every=0, patience=0, slip=0.0):
    """AdamW with warm-up and cosine decay on the response-masked loss; optional validation every
    ``eval_every`` steps, stopping early when it has not improved by 1 point for ``patience`` evals."""
    length = ar.max_length(items, fmt)
    ids, mask = pack(TOK, *ar.examples(items, fmt, slip, seed), length=length)
    x, y = ids[:, :-1], ids[:, 1:].masked_fill(mask == 0, -1)
    g = torch.Generator().manual_seed(run_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.99))
    warm = min(100, steps // 10)
    sched = lambda o: torch.optim.lr_scheduler.LambdaLR(  # noqa: E731
        o, lambda s: (s + 1) / warm if s < warm else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    def batches():
        while True:
            i = torch.randint(len(x), (batch,), generator=g)
            yield x[i], y[i]
    curve, losses, best, since, done = [], [], -1.0, 0, 0
    t0 = time.perf_counter()
    chunk = eval_every or steps
    schedule = sched(opt)
    it = batches()
    while done < steps:
        n = min(chunk, steps - done)
        h = train_steps(model, it, lambda m, b: m(*b)[1], steps=n, optimizer=opt, grad_clip=1.0,
                        desc=f"SFT {fmt}", progress=False,
                        scheduler=lambda o: _Stepper(schedule))
        losses += h["loss"]
        done += n
        if eval_fn is not None and eval_every:
            v = eval_fn(model)
            curve.append((done, v))
            if v > best + 0.01:
                best, since = v, 0
            else:
                since += 1
            if patience and since >= patience:
                break
    seconds = time.perf_counter() - t0
    tokens = int(mask[:, :].sum().item()) / len(items)  # mean supervised tokens per example
    return {"steps": done, "seconds": seconds, "final_loss": sum(losses[-20:]) / 20,
            "response_tokens_per_example": tokens, "tokens_seen": int(done * batch * tokens),
            "context_tokens_seen": int(done * batch * length), "validation_curve": curve}


class _Stepper:
    """Share one LR schedule across several train_steps calls."""
    def __init__(self, schedule):
        self.schedule = schedule

    def step(self):
        self.schedule.step()


def run_sft(args) -> dict:
    seed_everything(args.seed)
    train = train_set(args.n_train, args.sizes, seed=args.seed)
    tests = {s: ar.problems(args.n_test, [s], "test" if s in args.sizes else None, seed=100 + s)
             for s in args.sizes + args.longer if s > 1}
    out = {"conditions": conditions(), "settings": vars(args).copy(), "formats": {}}
    runs = [("direct", "direct", args.steps), ("worked", "worked", args.steps)]
    if args.direct_steps:  # direct answers trained longer, e.g. on as many context tokens as the worked run
        runs.append((f"direct_{args.direct_steps}_steps", "direct", args.direct_steps))
    for name, fmt, steps in runs:
        if name not in args.formats and fmt not in args.formats:
            continue
        seed_everything(args.seed)
        model = GPT(model_config(args))
        rec = sft(model, train, fmt, steps, args.lr, args.batch, args.seed, slip=args.slip)
        rec["params"] = model.num_params()
        t0 = time.perf_counter()
        rec["accuracy"], rec["response_chars"] = {}, {}
        for s, items in tests.items():
            rec["accuracy"][s], rec["response_chars"][s] = accuracy(model, items, args.block)
        rec["eval_seconds"] = time.perf_counter() - t0
        print(name, json.dumps({k: v for k, v in rec.items() if k != "validation_curve"}), flush=True)
        out["formats"][name] = rec
        if args.save_model and name == fmt:
            torch.save(model.state_dict(), f"/tmp/rl/sft_{fmt}_{args.seed}.pt")
    out["load_average_at_end"] = load_avg()
    return out


def sampled_stats(model, items, k: int, seed: int) -> dict:
    """pass@1 (the mean of c / n), pass@k and majority-vote accuracy from n = k samples per problem."""
    g = torch.Generator().manual_seed(run_seed(seed))
    outs = complete(model, TOK, [p.prompt for p in items], 96, do_sample=True, num_return_sequences=k,
                    generator=g)
    p1 = pk = mv = 0.0
    for texts, p in zip(outs, items):
        c = int(sum(ar.verify(t, p) for t in texts))
        p1 += c / k
        pk += pass_at_k(k, c, k)
        mv += majority_vote([ar.extract_answer(t) for t in texts]) == p.answer
    n = len(items)
    curve = {}
    for kk in (1, 2, 4, 8, 16):
        if kk <= k:
            curve[kk] = sum(pass_at_k(k, int(sum(ar.verify(t, p) for t in texts)), kk)
                            for texts, p in zip(outs, items)) / n
    votes = {}
    for kk in (1, 4, 16):
        if kk <= k:
            votes[kk] = sum(majority_vote([ar.extract_answer(t) for t in texts[:kk]]) == p.answer
                            for texts, p in zip(outs, items)) / n
    return {"pass@1": p1 / n, f"pass@{k}": pk / n, f"majority@{k}": mv / n, "pass_at_k": curve,
            "majority_at_k": votes}


@torch.no_grad()
def kl_estimator_spread(policy, reference, items, seed: int) -> dict:
    """KL(policy || reference) per response from k1 and k3 summed over its tokens: mean and std
    over responses sampled from the policy (Schulman's note: same mean, k3 has less spread)."""
    from aigc_lib.training.rl import kl_k1, kl_k3, sample_groups, token_logprobs
    g = torch.Generator().manual_seed(run_seed(seed))
    ids, mask, _ = sample_groups(policy, TOK, [p.prompt for p in items], 4, args_block[0], generator=g)
    logp, ref = token_logprobs(policy, ids), token_logprobs(reference, ids)
    out = {}
    for name, fn in (("k1", kl_k1), ("k3", kl_k3)):
        per_seq = (fn(logp, ref) * mask).sum(1)
        per_tok = fn(logp, ref)[mask > 0]
        out[name] = {"mean_per_response": per_seq.mean().item(), "std_per_response": per_seq.std().item(),
                     "mean_per_token": per_tok.mean().item(), "std_per_token": per_tok.std().item()}
    out["responses"] = len(ids)
    return out


args_block = [96]


def run_grpo(args) -> dict:
    args_block[0] = args.block
    seed_everything(args.seed)
    train = train_set(args.n_train, args.sizes, seed=args.seed)
    val = ar.problems(args.n_val, [s for s in args.sizes if s > 1], "validation", seed=50)
    tests = {s: ar.problems(args.n_test, [s], "test" if s in args.sizes else None, seed=100 + s)
             for s in args.sizes + args.longer if s > 1}
    test_all = [p for s in args.sizes if s > 1 for p in tests[s]]
    model = GPT(model_config(args))
    out = {"conditions": conditions(), "settings": vars(args).copy()}
    # The SFT start: train to the validation plateau (no 1-point gain in `patience` evaluations).
    if args.load_sft:  # the SFT start of an earlier run with the same settings
        model.load_state_dict(torch.load(args.load_sft))
        rec = {"loaded_from": args.load_sft}
    else:
        rec = sft(model, train, "worked", args.steps, args.lr, args.batch, args.seed,
                  eval_fn=lambda m: accuracy(m, val, args.block)[0], eval_every=args.eval_every,
                  patience=args.patience, slip=args.slip)
        torch.save(model.state_dict(), f"/tmp/rl/sft_start_{args.tag}_{args.seed}.pt")
    out["sft"] = rec
    print("sft", json.dumps(rec), flush=True)
    before = {s: accuracy(model, items, args.block)[0] for s, items in tests.items()}
    t0 = time.perf_counter()
    out["before"] = {"greedy": before, "sampled": sampled_stats(model, test_all, 16, seed=7)}
    out["before"]["sampled_seconds"] = time.perf_counter() - t0
    print("before", json.dumps(out["before"]), flush=True)
    pool = ar.problems(args.n_rl, [s for s in args.sizes if s > 1], "train", seed=args.seed + 500)
    sft_model = model
    out["runs"] = {}
    for lr in args.rl_lrs:
        model = copy.deepcopy(sft_model)
        reference = copy.deepcopy(sft_model)
        rng = random.Random(run_seed(args.seed))

        def prompts(step, g):
            return rng.sample(pool, args.prompts)

        config = GRPOConfig(steps=args.rl_steps, prompts_per_step=args.prompts, group_size=args.group,
                            max_new_tokens=args.block, lr=lr, beta=args.beta, seed=args.seed,
                            eval_interval=args.rl_eval_every, temperature=1.0, warmup_steps=args.rl_warmup)
        hist = train_grpo(model, TOK, prompts, ar.verify, config, progress=True, reference=reference,
                          evaluate=lambda m: accuracy(m, val, args.block)[0])
        run = {"config": config.to_dict(), "history": hist,
               "seconds_per_step": sum(hist["seconds"]) / len(hist["seconds"])}
        after = {s: accuracy(model, items, args.block)[0] for s, items in tests.items()}
        run["after"] = {"greedy": after, "sampled": sampled_stats(model, test_all, 16, seed=7)}
        run["kl_estimators"] = kl_estimator_spread(model, reference, test_all, seed=9)
        print("after", lr, json.dumps(run["after"]), "kl", hist["kl"][-1], "val", hist["eval"], flush=True)
        out["runs"][str(lr)] = run
    out["load_average_at_end"] = load_avg()
    return out


def run_rm(args) -> dict:
    """A reward model on preference pairs (right vs wrong sampled solutions), then best-of-n against it:
    the learned reward of the chosen sample against its true (verified) accuracy, as n grows."""
    from aigc_lib.models.reward import RewardModel
    from aigc_lib.training.rl import train_reward_model
    seed_everything(args.seed)
    policy = GPT(model_config(args))
    policy.load_state_dict(torch.load(f"/tmp/rl/sft_worked_{args.seed}.pt"))
    out = {"conditions": conditions(), "settings": vars(args).copy()}
    g = torch.Generator().manual_seed(run_seed(args.seed))
    t0 = time.perf_counter()
    pool = ar.problems(args.n_rm, [3, 4], "train", seed=args.seed + 700)
    samples = complete(policy, TOK, [p.prompt for p in pool], args.block, do_sample=True,
                       num_return_sequences=8, generator=g)
    prompts, right, wrong = [], [], []
    for p, texts in zip(pool, samples):
        good = [t for t in texts if ar.verify(t, p) and t.endswith("\n")]
        bad = [t for t in texts if not ar.verify(t, p) and t.endswith("\n")]
        for w, l in zip(good, bad):
            prompts.append(p.prompt), right.append(w), wrong.append(l)
    out["pairs"] = len(prompts)
    length = max(len(p) + max(len(w), len(l)) for p, w, l in zip(prompts, right, wrong))
    chosen, rejected = pack(TOK, prompts, right, length), pack(TOK, prompts, wrong, length)
    rm = RewardModel(model_config(args))
    rm.gpt.load_state_dict(policy.state_dict())  # start from the SFT model, as InstructGPT did
    hist = train_reward_model(rm, chosen, rejected, steps=args.rm_steps, batch_size=32, lr=3e-4,
                              seed=args.seed, progress=True)
    out["rm_train"] = {"final_loss": sum(hist["loss"][-20:]) / 20,
                       "final_accuracy": sum(hist["accuracy"][-20:]) / 20,
                       "seconds": time.perf_counter() - t0}
    # held-out pairs and best-of-n on test problems
    test = ar.problems(args.n_test, [3, 4], "test", seed=104)
    n_max = 16
    outs = complete(policy, TOK, [p.prompt for p in test], args.block, do_sample=True,
                    num_return_sequences=n_max, generator=g)
    rows = []
    with torch.no_grad():
        for p, texts in zip(test, outs):
            ids, mask = pack(TOK, [p.prompt] * n_max, [t if t else "\n" for t in texts],
                             len(p.prompt) + max(len(t) for t in texts) + 1)
            r = rm(ids, mask).tolist()
            rows.append((r, [ar.verify(t, p) for t in texts]))
    bon = {}
    for n in (1, 2, 4, 8, 16):
        rm_reward = acc = oracle = 0.0
        for r, v in rows:
            i = max(range(n), key=lambda j: r[j])
            rm_reward += r[i]
            acc += v[i]
            oracle += max(v[:n])
        bon[n] = {"rm_reward": rm_reward / len(rows), "true_accuracy": acc / len(rows),
                  "oracle_best_of_n": oracle / len(rows)}
    pair_acc = []
    for r, v in rows:
        for i in range(n_max):
            for j in range(n_max):
                if v[i] > v[j]:
                    pair_acc.append(r[i] > r[j])
    out["held_out_pair_accuracy"] = sum(pair_acc) / max(1, len(pair_acc))
    out["best_of_n"] = bon
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in out.items() if k not in ("conditions", "settings")}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["sft", "grpo", "rm"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--embd", type=int, default=96)
    ap.add_argument("--block", type=int, default=96)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--n-val", type=int, default=150)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--longer", type=int, nargs="+", default=[5, 6])
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--n-rl", type=int, default=2000)
    ap.add_argument("--rl-steps", type=int, default=100)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--rl-warmup", type=int, default=10)
    ap.add_argument("--load-sft", default="")
    ap.add_argument("--rl-lrs", type=float, nargs="+", default=[3e-5])
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--rl-eval-every", type=int, default=25)
    ap.add_argument("--n-rm", type=int, default=400)
    ap.add_argument("--direct-steps", type=int, default=0)
    ap.add_argument("--formats", nargs="+", default=["direct", "worked"])
    ap.add_argument("--rm-steps", type=int, default=300)
    ap.add_argument("--slip", type=float, default=0.0, help="the teacher's slip rate (ar.teacher)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--save-model", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    result = {"sft": run_sft, "grpo": run_grpo, "rm": run_rm}[args.what](args)
    if args.no_save:
        return
    record = json.loads(OUT.read_text()) if OUT.exists() else {}
    key = f"{args.what}{'-' + args.tag if args.tag else ''}"
    record.setdefault(key, {})[f"seed{args.seed}"] = result
    OUT.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
