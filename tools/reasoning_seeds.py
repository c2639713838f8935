"""The reasoning chapter's models under several seed offsets: the record behind its asserts' margins.

Each offset runs in its own process (``AIGC_SEED_OFFSET=k``, sharing the model cache: the key
includes the offset), loads or trains the chapter's four models (:mod:`aigc_lib.zoo.reasoning`)
and prints the figures the chapter asserts: greedy accuracy per size for direct answers and worked
solutions, pass@k and majority@k, the reward model's pair accuracy and best-of-n, GRPO's pass@1 and
pass@16 before and after, its KL with both estimators, and the training times recorded when each
model was trained (busy or idle: see the conditions).

    python tools/reasoning_seeds.py 0 1 2 --json aigc_lib/measurements/reasoning_seeds.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from seed_sweep import run_offsets

REPORT = r"""
import json
from aigc_lib import zoo
out = {}
for fmt in ("direct", "worked"):
    _, h = zoo.arithmetic_sft(fmt, progress=False)
    out[fmt] = {"greedy": h["after"]["greedy"], "chars": h["after"]["chars"], "sampled": h["after"]["sampled"],
                "validation": h["eval"], "tokens_seen": h["tokens_seen"], "teacher_accuracy": h["teacher_accuracy"],
                "train_seconds": h["train_seconds"]}
_, h = zoo.arithmetic_reward_model(progress=False)
out["reward_model"] = {"pairs": h["pairs"], "train_accuracy_last_20": sum(h["accuracy"][-20:]) / 20,
                       "held_out_pair_accuracy": h["held_out_pair_accuracy"], "best_of_n": h["best_of_n"],
                       "train_seconds": h["train_seconds"]}
_, h = zoo.arithmetic_grpo(progress=False)
out["grpo"] = {"after": {"greedy": h["after"]["greedy"], "sampled": h["after"]["sampled"]},
               "validation_pass1": h["eval"], "kl_last": h["kl"][-1], "kl_spread": h["kl_spread"],
               "clip_fraction_mean": sum(h["clip_fraction"]) / len(h["clip_fraction"]),
               "seconds_per_step": sum(h["seconds"]) / len(h["seconds"]), "train_seconds": h["train_seconds"]}
print("RESULT " + json.dumps(out))
"""


def headline(r: dict) -> dict:
    """The chapter's asserted quantities from one offset's report."""
    w, d, g, rm = r["worked"], r["direct"], r["grpo"], r["reward_model"]
    p = lambda s, k: s["sampled"]["pass_at_k"][str(k)]  # noqa: E731
    m = lambda s, k: s["sampled"]["majority_at_k"][str(k)]  # noqa: E731
    return {"greedy size 4 direct / worked": [d["greedy"]["4"], w["greedy"]["4"]],
            "greedy size 3 direct / worked": [d["greedy"]["3"], w["greedy"]["3"]],
            "worked pass@1 / pass@16 / majority@16": [p(w, 1), p(w, 16), m(w, 16)],
            "direct pass@1 / majority@16": [p(d, 1), m(d, 16)],
            "GRPO pass@1 before / after / gain": [p(w, 1), p(g["after"], 1), p(g["after"], 1) - p(w, 1)],
            "GRPO pass@16 gain": p(g["after"], 16) - p(w, 16),
            "reward model pair accuracy held-out / train": [rm["held_out_pair_accuracy"],
                                                            rm["train_accuracy_last_20"]],
            "best-of-1 / best-of-16 true accuracy": [rm["best_of_n"]["1"]["true_accuracy"],
                                                     rm["best_of_n"]["16"]["true_accuracy"]],
            "best-of-1 / best-of-16 learned reward": [rm["best_of_n"]["1"]["rm_reward"],
                                                      rm["best_of_n"]["16"]["rm_reward"]],
            "SFT validation, last three": [a for _, a in w["validation"][-3:]],
            "train seconds direct / worked / reward model / GRPO": [d["train_seconds"], w["train_seconds"],
                                                                    rm["train_seconds"], g["train_seconds"]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("offsets", nargs="+", type=int)
    parser.add_argument("--json", help="write the reports per offset here")
    parser.add_argument("--jobs", type=int, default=1, help="offsets run at once (one thread each)")
    args = parser.parse_args(argv)
    results = {}
    t0 = time.perf_counter()
    env = {"AIGC_PROFILE": os.environ.get("AIGC_PROFILE", "quick")}
    for k, report in run_offsets(REPORT, args.offsets, args.jobs, env).items():
        results[k] = {"report": report, "headline": headline(report),
                      "seconds_this_run": time.perf_counter() - t0}
        print(f"offset {k}:", json.dumps(results[k]["headline"]), flush=True)
    if args.json:
        from aigc_lib import zoo  # the recipes the models above were trained with (quick profile)
        recipes = {"sft": zoo.ArithmeticSFT().to_dict(), "reward_model": zoo.ArithmeticRewardModel().to_dict(),
                   "grpo": zoo.ArithmeticGRPO().to_dict()}
        record = {"readme": "Written by tools/reasoning_seeds.py: the reasoning chapter's models per seed offset "
                            "(train_seconds were measured when each model was trained, on a 2-core CPU shared "
                            "with another job).",
                  "conditions": {"python": platform.python_version(), "machine": platform.machine(),
                                 "cpus": os.cpu_count(), "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())},
                  "recipes": json.loads(json.dumps(recipes)),
                  "offsets": {str(k): v for k, v in results.items()}}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
