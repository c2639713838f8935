"""The flow-matching chapter's ring claims under several seed offsets, retraining only its ring models.

The chapter claims that one reflow makes 1-step samples of the ring cover at least 7 of its 8
modes and land closer to the modes than the un-reflowed model's 1-step samples. An all-or-nothing
claim is checked over at least 6 seed offsets (CONTRIBUTING.md), so this tool trains the ring flow
model, its reflow and the ring diffusion model under each offset (each in its own process,
``AIGC_SEED_OFFSET=k``, sharing the model cache: the key includes the offset), scores them with
:func:`aigc_lib.zoo.flow.ring_flow_report` exactly as the chapter does, and prints each claim per offset.

    python tools/flow_seeds.py 0 1 2 3 4 5 --json aigc_lib/measurements/flow_seeds.json

Each offset is scored twice: with the chapter's recipes (t = u^2 in training) and with t uniform
(``t_exponent=1``), the ablation the chapter quotes. The JSON is the record the chapter quotes (``measurement("flow_seeds")``), with the recipes that
were trained, which the chapter compares with its own so that the record cannot drift from the code.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from seed_sweep import run_offsets

SCORE = r"""
import json, os
from aigc_lib import zoo
from aigc_lib.zoo.flow import ring_flow_report

overrides = json.loads(os.environ.get("FLOW_OVERRIDES", "{}"))
flow, _ = zoo.ring_flow(progress=False, **overrides)
reflow, _ = zoo.ring_reflow(progress=False, **overrides)
diffusion, _ = zoo.ring_diffusion(progress=False)
print("RESULT " + json.dumps(ring_flow_report(flow, reflow, diffusion)))
"""


def claims(r: dict) -> dict[str, bool]:
    """The chapter's asserted ring claims, from one offset's report."""
    f = r["few_step"]
    s = r["straightness"]
    return {
        "reflow 1-step covers >= 7 modes": f["reflow/1"]["modes"] >= 7,
        "reflow 1-step covers all 8 modes": f["reflow/1"]["modes"] == 8,
        "reflow 1-step closer to the modes than flow 1-step": f["reflow/1"]["distance"] < f["flow/1"]["distance"],
        "reflow 2-step closer than flow 2-step": f["reflow/2"]["distance"] < f["flow/2"]["distance"],
        "flow paths straighter than diffusion's": s["flow"] < s["diffusion"],
        "reflow paths straighter than flow's": s["reflow"] < s["flow"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("offsets", nargs="+", type=int)
    parser.add_argument("--json", help="write the reports and claims per offset here")
    args = parser.parse_args(argv)
    results = {}
    uniform = {}  # the ablation: the same recipes with t uniform on [0, 1]
    for overrides, into in (({}, results), ({"t_exponent": 1.0}, uniform)):
        for k, report in run_offsets(SCORE, args.offsets, env={"FLOW_OVERRIDES": json.dumps(overrides)}).items():
            into[k] = {**report, "claims": claims(report)}
            print(f"offset {k} {overrides}: {report}", flush=True)
    names = list(next(iter(results.values()))["claims"])
    print(f"\n{'claim':58s} " + " ".join(f"o{k}" for k in results) + "  holds at")
    for name in names:
        marks = [results[k]["claims"][name] for k in results]
        print(f"{name:58s} " + " ".join(" y" if v else " N" for v in marks) + f"  {sum(marks)}/{len(marks)}")
    if args.json:
        from aigc_lib.zoo import RingDiffusion, RingFlow, RingReflow

        recipes = {"flow": RingFlow().to_dict(), "reflow": RingReflow().to_dict(),
                   "diffusion": RingDiffusion().to_dict(),
                   "flow_uniform_t": RingFlow().replace(t_exponent=1.0).to_dict()}
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        record = {"what": "The ring flow model before and after reflow, and the ring diffusion model, "
                          "under several seed offsets: few-step samples and path straightness.",
                  "how": "python tools/flow_seeds.py " + " ".join(map(str, args.offsets)) + " (quick profile; "
                         "each offset in its own process with AIGC_SEED_OFFSET set)",
                  "date": time.strftime("%Y-%m-%d"), "commit": commit, "machine": platform.machine(),
                  "recipes": recipes, "offsets": {str(k): r for k, r in results.items()},
                  "uniform_t": {str(k): r for k, r in uniform.items()}}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
