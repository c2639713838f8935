"""Train the applications chapter's text-to-image models under several seed offsets and record
the evaluation tables (``aigc_lib/measurements/text2image_seeds.json``), so the chapter can quote
the spread of its numbers and its hidden asserts can carry margins measured across seeds.

    AIGC_PROFILE=quick AIGC_CACHE=... python tools/text2image_seeds.py 0 1 2 [--jobs 3]

Each offset runs in its own process (``AIGC_SEED_OFFSET=k``) and trains only what its cache lacks;
with ``--jobs n`` up to n offsets run at once, on one thread each.
"""
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from seed_sweep import run_offsets

OUT = Path(__file__).resolve().parents[1] / "aigc_lib" / "measurements" / "text2image_seeds.json"
ONE = """
import json, time
import torch
from aigc_lib.data.captions import WORDS
from aigc_lib.zoo.images import Classifier
from aigc_lib.zoo.text2image import MNISTCLIP, TextToImage, generate
start = time.perf_counter()
clip, tok, ch = MNISTCLIP().load(progress=False)
model, tok, h = TextToImage().load(progress=False)
clf, _ = Classifier().load(progress=False)
readings = {}  # ordinal phrasings: the digit asked for, the other neighbour, or the number named?
for template, step in (("a digit after {w}", 1), ("a number after {w}", 1), ("a digit before {w}", -1),
                       ("a number before {w}", -1), ("the digit after {n}", 1), ("the number before {n}", -1),
                       ("after {w}", 1), ("before {w}", -1)):
    d = torch.arange(1, 9).repeat(10)
    texts = [template.format(w=WORDS[i], n=str(i)) for i in d.tolist()]
    read = clf.predict(generate(model, tok, texts, seed=9))
    readings[template] = {"as_asked": (read == d + step).float().mean().item(),
                          "reversed": (read == d - step).float().mean().item(),
                          "named": (read == d).float().mean().item()}
plain = {}  # seen name prompts at the sweep's scales: rescaled guidance (the recipe's) against plain
texts = [f"the digit {WORDS[d]}" for d in range(10)] * 20
for phi in (model.guidance_rescale, 0.0):
    for w in (1.5, 3.0, 6.0):
        read = clf.predict(generate(model, tok, texts, seed=11, guidance=w, guidance_rescale=phi))
        plain[f"{phi}@{w}"] = (read == torch.arange(10).repeat(20)).float().mean().item()
print("RESULT " + json.dumps({"clip": ch["retrieval"], "rescale_vs_plain": plain, "clip_seconds": ch["train_seconds"],
                  "diffusion_seconds": h["diffusion_seconds"], "eval_seconds": h["eval_seconds"],
                  "fit_seconds": h["train_seconds"],
                  "table": h["table"], "recipe": TextToImage().to_dict(), "ordinal_readings": readings,
                  "wall_seconds": time.perf_counter() - start}))
"""


def main(offsets: list[int], jobs: int = 1) -> None:
    record = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    for k, report in run_offsets(ONE, offsets, jobs).items():
        record["runs"][str(k)] = report
        print(k, {key: report[key] for key in ("clip", "fit_seconds", "wall_seconds")}, flush=True)
    record["runs"] = dict(sorted(record["runs"].items(), key=lambda kv: int(kv[0])))
    record["conditions"] = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
                            "machine": platform.machine(), "cpus": os.cpu_count(),
                            "profile": os.environ.get("AIGC_PROFILE", "quick"),
                            "note": f"times are wall-clock; {jobs} offset(s) ran at once, on 2 cores"}
    OUT.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    jobs = int(args.pop(args.index("--jobs") + 1)) if "--jobs" in args else 1
    main([int(a) for a in args if a != "--jobs"] or [0, 1, 2], jobs)
