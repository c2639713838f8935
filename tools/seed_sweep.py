"""Run one script under several seed offsets and collect what each run reports.

The seed sweeps of ``tools/*_seeds.py`` measure a chapter's claims under seed offsets 0, 1, 2, ...
Each offset runs in its own process with ``AIGC_SEED_OFFSET=k`` (the model cache keys include the
offset, so a process trains only what the cache lacks) and reports by printing one line
``RESULT <json>``. With ``jobs > 1`` several offsets run at once, on one thread each.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def run_offsets(code: str, offsets: list[int], jobs: int = 1, env: dict[str, str] | None = None) -> dict[int, dict]:
    """``{k: report}`` for each offset k: the JSON of the ``RESULT`` line ``python -c code`` printed.

    Raises ``RuntimeError`` with the end of the run's output when a run fails or reports nothing.
    """
    pending, running, results = list(offsets), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            k = pending.pop(0)
            run_env = {**os.environ, **(env or {}), "AIGC_SEED_OFFSET": str(k),
                       **({"AIGC_THREADS": "1"} if jobs > 1 else {})}
            proc = subprocess.Popen([sys.executable, "-c", code], env=run_env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            running[k] = (proc, time.perf_counter())
        k = next(iter(running))
        (proc, start) = running.pop(k)
        out, err = proc.communicate()
        line = next((x for x in reversed(out.splitlines()) if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            for other, _ in running.values():
                other.kill()
            raise RuntimeError(f"offset {k} failed (exit {proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
        results[k] = json.loads(line[len("RESULT "):])
        print(f"offset {k} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return {k: results[k] for k in offsets}
