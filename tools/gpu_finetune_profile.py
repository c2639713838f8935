"""Measure the fine-tuning chapter's recipes in the ``full`` profile on a GPU.

Trains, through ``recipe.load()`` in a fresh cache, the full-profile base GPT and every recipe the
chapter loads (``PoemGPT`` by method and rank, ``InstructionGPT``, ``QuestionDPO`` at two betas),
and writes what the chapter quotes into one JSON file, rewritten after each recipe so a run cut
short keeps what it measured::

    AIGC_PROFILE=full python tools/gpu_finetune_profile.py --out aigc_lib/measurements/h200_finetune.json

``--smoke`` shrinks every recipe to a few steps, to test this script on a CPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import time
from pathlib import Path

import torch

from aigc_lib import zoo
from aigc_lib.config import profile
from aigc_lib.data import load_shakespeare
from aigc_lib.training.lm import evaluate

KEEP = ("val_loss_full", "trainable", "checkpoint_bytes", "seconds_per_step", "train_seconds", "accuracy", "pairs",
        "eval_step", "val_loss")


def summary(history: dict) -> dict:
    out = {k: history[k] for k in KEEP if k in history}
    if "eval" in history:
        out["eval"] = {k: {kk: v for kk, v in d.items() if kk != "samples"} for k, d in history["eval"].items()}
        out["samples"] = history["eval"]["policy"]["samples"][:4]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    base = zoo.ShakespeareGPT()
    tiny = dict(steps=2, warmup_steps=1, eval_interval=2, eval_batches=1)
    if args.smoke:
        base = base.replace(n_layer=1, n_head=2, n_embd=32, sample_steps=[], checkpoint_interval=0, **tiny)
    runs = {f"poem-{m}": zoo.PoemGPT(method=m, base=base) for m in zoo.FINETUNE_METHODS}
    runs.update({f"poem-lora-r{r}": zoo.PoemGPT(method="lora", r=r, base=base) for r in (1, 16)})
    runs["sft"] = zoo.InstructionGPT(base=base)
    runs.update({f"dpo-beta{b}": zoo.QuestionDPO(base=base, beta=b) for b in (0.5, 0.1)})
    if args.smoke:
        runs = {k: r.replace(**({k: v for k, v in tiny.items()} if k.startswith("poem") else
                                dict(steps=2) if k == "sft" else dict(steps=2, n_prompts=100)))
                for k, r in runs.items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {"what": "the fine-tuning chapter's recipes in the full profile", "profile": profile(), "date_utc":
              datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "git_commit": commit,
              "environment": {"torch": torch.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available()
                              else None}, "smoke": args.smoke, "runs": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(record, indent=1) + "\n")

    start = time.perf_counter()
    model, tok, history = base.load(progress=False)
    sonnets = torch.tensor(tok.encode(load_shakespeare().poems_val), dtype=torch.uint8)
    record["base"] = {"recipe": base.to_dict(), "val_loss_full": history["val_loss_full"],
                      "train_seconds": history["train_seconds"],
                      "zero_shot_sonnets": evaluate(model, sonnets, model.config.block_size, progress=False)}
    save()
    for name, recipe in runs.items():
        history = recipe.load(progress=False)[-1]
        record["runs"][name] = {"recipe": recipe.to_dict(), **summary(history)}
        record["seconds_so_far"] = time.perf_counter() - start
        print(name, json.dumps(summary(history))[:300], flush=True)
        save()
    record["status"] = "done"
    save()


if __name__ == "__main__":
    main()
