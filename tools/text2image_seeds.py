"""Train the applications chapter's text-to-image models under several seed offsets and record
the evaluation tables (``aigc_lib/measurements/text2image_seeds.json``), so the chapter can quote
the spread of its numbers and its hidden asserts can carry margins measured across seeds.

    AIGC_PROFILE=quick AIGC_CACHE=... python tools/text2image_seeds.py 0 1 2

Each offset runs in its own process (``AIGC_SEED_OFFSET=k``) and trains only what its cache lacks.
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

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
readings = {}  # held-out ordinal prompts: read as the word's meaning, or as the seen template's?
for template, step in (("the number after {}", 1), ("the digit before {}", -1)):
    d = torch.arange(1, 9).repeat(10)
    read = clf.predict(generate(model, tok, [template.format(WORDS[i]) for i in d.tolist()], seed=9))
    readings[template] = {"as_asked": (read == d + step).float().mean().item(),
                          "reversed": (read == d - step).float().mean().item()}
print(json.dumps({"clip": ch["retrieval"], "clip_seconds": ch["train_seconds"],
                  "diffusion_seconds": h["diffusion_seconds"], "eval_seconds": h["eval_seconds"],
                  "fit_seconds": h["train_seconds"],
                  "table": h["table"], "recipe": TextToImage().to_dict(), "ordinal_readings": readings,
                  "wall_seconds": time.perf_counter() - start}))
"""


def main(offsets: list[int]) -> None:
    record = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    for k in offsets:
        env = {**os.environ, "AIGC_SEED_OFFSET": str(k)}
        out = subprocess.run([sys.executable, "-c", ONE], env=env, capture_output=True, text=True, check=True)
        record["runs"][str(k)] = json.loads(out.stdout.strip().splitlines()[-1])
        print(k, {key: record["runs"][str(k)][key] for key in ("clip", "fit_seconds", "wall_seconds")}, flush=True)
    record["conditions"] = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
                            "machine": platform.machine(), "cpus": os.cpu_count(),
                            "profile": os.environ.get("AIGC_PROFILE", "quick"),
                            "note": "times are wall-clock on a machine shared with other jobs"}
    OUT.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0, 1, 2])
