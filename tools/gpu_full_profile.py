"""Measure the pretraining chapter's character GPT (``ShakespeareGPT``) in the ``full`` profile on a GPU.

Trains the recipe exactly as the book's full profile defines it, through ``recipe.load()``, in a
fresh cache folder, then times ``generate`` with and without the KV cache and draws a sample.
Every figure goes into one JSON file (written after each phase, so a run cut short keeps what it
measured)::

    AIGC_PROFILE=full python tools/gpu_full_profile.py --out aigc_lib/measurements/h200.json

Timing is instrumentation only: thin wrappers record when ``train_lm`` calls ``check_finite``
(once per training step, right after the forward pass, which syncs on ``loss.item()``),
``estimate_loss`` (the periodic validation) and ``generate`` (the samples drawn during training);
they return what the wrapped functions return and change no computation.

``--steps N`` (with ``--smoke``) is for a few-step test of this script on a CPU in the quick profile;
a measurement for the book uses neither.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# the full profile's shape, as the pretraining chapter's section on scale states it
BOOK_FULL = {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "dropout": 0.2,
             "batch_size": 64, "steps": 5000, "compile": True, "mixed_precision": True}
SOURCES = ("aigc_lib/zoo/text.py", "aigc_lib/training/lm.py", "aigc_lib/models/gpt.py",
           "aigc_lib/sampling.py", "aigc_lib/config.py", "aigc_lib/data/shakespeare.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--steps", type=int, default=None,
                   help="override the recipe's training steps (smoke tests only; default: the recipe's)")
    p.add_argument("--smoke", action="store_true",
                   help="CPU smoke test: 2 eval batches, a 20k-character validation text, short generations")
    p.add_argument("--new-tokens", type=int, default=None,
                   help="tokens per timed generation (default: the context minus the 1-token prompt + 1, "
                        "i.e. every new token fits the context, so the KV cache serves every step)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per generation setting")
    p.add_argument("--commit", default=None, help="the git commit of the tree (when .git is not there)")
    p.add_argument("--tree", default=None, help="a note on the tree's state, e.g. 'clean'")
    return p.parse_args(argv)


def sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def git_commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def nvidia_smi() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    t_script = time.perf_counter()
    root = Path(__file__).resolve().parent.parent
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("AIGC_CACHE"):  # a fresh cache: the model must train now, not load
        os.environ["AIGC_CACHE"] = tempfile.mkdtemp(prefix="aigc_cache_")

    import torch

    import aigc_lib
    import aigc_lib.training.lm as lm
    import aigc_lib.zoo.text as text
    from aigc_lib.config import device, profile
    from aigc_lib.models.gpt import GPT
    from aigc_lib.sampling import generate
    from aigc_lib.zoo import ShakespeareGPT

    dev = device()
    cuda = dev.type == "cuda"
    result: dict = {
        "what": "the pretraining chapter's character-level GPT (aigc_lib.zoo.ShakespeareGPT) trained in the full profile",
        "status": "started",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("AIGC_PROFILE", "AIGC_CACHE")
                            if k in os.environ) + " python3 " + " ".join(map(shlex.quote, sys.argv)),
        "git_commit": args.commit or git_commit(root),
        "tree": args.tree,
        "source_sha256_16": {s: sha(root / s) for s in SOURCES},
        "profile": profile(),
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "triton": _version("triton"), "device": str(dev),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpu_capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
            "nvidia_smi": nvidia_smi() if cuda else None,
            "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
        },
        "deviations": [],
        "instrumentation": ("timestamps from thin wrappers around aigc_lib.training.lm.check_finite (once per "
                            "step, after the forward pass's loss.item() sync), lm.estimate_loss and the "
                            "generate that ShakespeareGPT.fit calls for its samples; they change no computation"),
    }

    def dump(status: str) -> None:
        result["status"] = status
        result["script_seconds"] = round(time.perf_counter() - t_script, 2)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, out)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_script:7.1f} s] {msg}", flush=True)

    log(f"profile={profile()} device={dev} gpu={result['environment']['gpu']} torch={torch.__version__} "
        f"cache={os.environ['AIGC_CACHE']}")

    # ------------------------------------------------------------------ the recipe
    recipe = ShakespeareGPT()
    if args.steps is not None:
        n = args.steps
        recipe = recipe.replace(steps=n, warmup_steps=min(recipe.train.warmup_steps, n // 2),
                                eval_interval=max(1, n // 2), checkpoint_interval=n, sample_steps=[0, n])
        result["deviations"].append(f"--steps {n}: steps, warm-up, eval and checkpoint intervals overridden")
    if args.smoke:
        recipe = recipe.replace(eval_batches=2, sample_chars=20, sample_texts=2)
        corpus = text.load_shakespeare()
        small = dataclasses.replace(corpus, val=corpus.val[:20000], train=corpus.train[:200000])
        text.load_shakespeare = lambda: small
        result["deviations"].append("--smoke: 2 eval batches, 20k validation / 200k training characters")

    # ------------------------------------------------------------------ instrumentation
    marks: dict = {"step_end": [], "evals": [], "samples": []}
    real_check, real_estimate, real_generate = lm.check_finite, lm.estimate_loss, text.generate
    total_steps = recipe.train.steps

    def check_finite(loss, *a, **k):
        value = real_check(loss, *a, **k)
        marks["step_end"].append(time.perf_counter())
        return value

    def estimate_loss(model, data, config, seed):
        t0 = time.perf_counter()
        value = real_estimate(model, data, config, seed)
        t1 = time.perf_counter()
        marks["evals"].append((t0, t1, seed, value))
        if seed == config.seed + 2:  # the second of a validation's two estimates (val, then train)
            step = len(marks["step_end"])
            val = marks["evals"][-2][3]
            rate = ""
            if step >= 2:
                recent = marks["step_end"][-min(step, 50):]
                rate = f", {(len(recent) - 1) / (recent[-1] - recent[0]):.1f} steps/s lately"
            log(f"step {step}/{total_steps}: val {val:.4f} train {value:.4f} "
                f"(eval took {t1 - marks['evals'][-2][0]:.1f} s{rate})")
            result["progress"] = {"step": step, "val_loss": val, "train_eval_loss": value}
            dump("training")
        return value

    def sample_generate(*a, **k):
        t0 = time.perf_counter()
        value = real_generate(*a, **k)
        marks["samples"].append((t0, time.perf_counter()))
        return value

    lm.check_finite, lm.estimate_loss, text.generate = check_finite, estimate_loss, sample_generate

    # ------------------------------------------------------------------ train
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result["recipe"] = recipe.to_dict()
    dump("training")
    log(f"training {recipe.name}: {recipe.to_dict()}")
    t_load = time.perf_counter()
    try:
        model, tok, history = recipe.load(progress=False)
    except Exception as exc:  # noqa: BLE001 - the one fallback the brief allows: no torch.compile
        if not recipe.train.compile or not cuda:
            raise
        result["compile_error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
        log("training with torch.compile failed; retrying with compile=False:\n" + traceback.format_exc())
        recipe = recipe.replace(compile=False)
        result["recipe"] = recipe.to_dict()
        result["deviations"].append("torch.compile failed on this machine (see compile_error): compile=False")
        for key in marks:
            marks[key].clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t_load = time.perf_counter()
        model, tok, history = recipe.load(progress=False)
    load_seconds = time.perf_counter() - t_load
    lm.check_finite, lm.estimate_loss, text.generate = real_check, real_estimate, real_generate
    log(f"trained: val_loss_full {history['val_loss_full']:.4f}, loop {history['loop_seconds']:.1f} s")

    # ------------------------------------------------------------------ training figures
    cfg = recipe.train
    steps_done = len(history["train_loss"])
    tps = history["tokens_per_step"]
    ends = marks["step_end"]
    eval_seconds = sum(t1 - t0 for t0, t1, *_ in marks["evals"])
    sample_seconds = sum(t1 - t0 for t0, t1 in marks["samples"])
    # steps whose interval holds no validation, sampling or checkpoint: the steady training rate
    busy = [(t0, t1) for t0, t1, *_ in marks["evals"]] + marks["samples"]
    plain = [b - a for a, b in zip(ends, ends[1:])
             if not any(a <= t0 < b for t0, _ in busy)]
    first_step = None
    if ends:
        before = [t1 for _, t1 in busy if t1 <= ends[0]]
        first_step = ends[0] - (max(before) if before else t_load)
    median_step = statistics.median(plain) if plain else float("nan")
    loop = history["loop_seconds"]
    val_curve = [[s, round(v, 5), round(t, 5)] for s, v, t in
                 zip(history["eval_step"], history["val_loss"], history["train_eval_loss"])]
    best = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
    tl = history["train_loss"]
    result["training"] = {
        "steps": steps_done, "tokens_per_step": tps, "tokens_seen": steps_done * tps,
        "val_loss_random_windows_final": round(history["val_loss"][-1], 5),
        "val_loss_random_windows_best": round(history["val_loss"][best], 5),
        "val_loss_random_windows_best_step": history["eval_step"][best],
        "val_loss_random_windows_note": (f"lm.estimate_loss: mean over {cfg.eval_batches} batches of "
                                         f"{cfg.batch_size} random {cfg.block_size}-character windows of the "
                                         "validation plays (fixed seed), under bf16 autocast; nanoGPT's 1.4697 "
                                         "is this kind of estimate, on its own split of tiny Shakespeare"),
        "val_loss_full": round(history["val_loss_full"], 5),
        "val_loss_full_note": ("lm.evaluate: every held-out character, non-overlapping windows of "
                               f"{recipe.model.block_size} + 1, float32, no autocast"),
        "train_loss_final": round(tl[-1], 5),
        "train_loss_mean_last_100": round(sum(tl[-100:]) / len(tl[-100:]), 5),
        "train_eval_loss_final": round(history["train_eval_loss"][-1], 5),
        "val_curve_columns": ["step", "val_loss_random_windows", "train_loss_random_windows"],
        "val_curve": val_curve,
        "train_loss_every_50": [[i + 1, round(tl[i], 4)] for i in range(49, len(tl), 50)],
        "num_params": history["num_params"],
        "num_params_non_embedding": model.num_params(non_embedding=True),
        "seconds": {
            "recipe_load_total": round(load_seconds, 2),
            "train_seconds (fit: loop + val_loss_full)": round(history.get("train_seconds", float("nan")), 2),
            "loop_seconds (train_lm: steps + validations + samples + compile)": round(loop, 2),
            "validations (estimate_loss, 2 per eval)": round(eval_seconds, 2),
            "samples during training": round(sample_seconds, 2),
            "first_step (includes torch.compile)": round(first_step, 2) if first_step is not None else None,
            "training steps only (loop - validations - samples)": round(loop - eval_seconds - sample_seconds, 2),
            "val_loss_full evaluate": round(history.get("eval_seconds", float("nan")), 2),
        },
        "tokens_per_second": {
            "overall (steps x tokens / loop_seconds)": round(steps_done * tps / loop),
            "training only (excluding validations and samples, compile included)":
                round(steps_done * tps / (loop - eval_seconds - sample_seconds)),
            "steady state (median step, no compile)": round(tps / median_step) if plain else None,
        },
        "median_step_ms": round(1000 * median_step, 3) if plain else None,
        "steps_per_second_history": round(history["steps_per_second"], 3),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        "amp_dtype": "bfloat16" if (cuda and cfg.mixed_precision and torch.cuda.is_bf16_supported())
                     else ("float16" if cuda and cfg.mixed_precision else "float32"),
        "compiled": bool(cfg.compile and cuda),
        "samples_during_training_temperature_1": history.get("samples", []),
    }
    shape = {**recipe.model.to_dict(), **cfg.to_dict()}
    for key, want in BOOK_FULL.items():
        if shape.get(key) != want:
            result["deviations"].append(f"{key} = {shape.get(key)!r}, the book's full profile says {want!r}")
    dump("trained")
    log("training figures: " + json.dumps({k: result["training"][k] for k in
                                            ("val_loss_random_windows_final", "val_loss_full", "train_loss_final",
                                             "tokens_per_second", "seconds")}))

    # ------------------------------------------------------------------ KV cache timing
    model.eval()
    nl = tok.encode("\n")[0]
    context = recipe.model.block_size
    n_new = args.new_tokens or context  # prompt 1 + n_new - 1 read tokens <= context: no sliding
    n_new = 16 if args.smoke and args.new_tokens is None else n_new
    batches = [1, 8] if args.smoke else [1, 64]
    repeats = 1 if args.smoke else args.repeats

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def run(B, new, use_cache, sliding):
        prompt = torch.full((B, 1), nl, dtype=torch.long, device=dev)
        sync()
        t0 = time.perf_counter()
        ids = generate(model, prompt, new, use_cache=use_cache, sliding_window=sliding)
        sync()
        return time.perf_counter() - t0, ids

    def bench(new, sliding, reps):
        rows = []
        for B in batches:
            outs = {}
            for use_cache in (True, False):
                run(B, min(new, 64), use_cache, False)  # warm-up: kernels, allocator, clocks
                times = []
                for _ in range(reps):
                    seconds, outs[use_cache] = run(B, new, use_cache, sliding)
                    times.append(seconds)
                rows.append({"batch": B, "new_tokens": new, "use_cache": use_cache, "sliding_window": sliding,
                             "seconds_best": round(min(times), 4), "seconds_all": [round(t, 4) for t in times],
                             "ms_per_token_step": round(1000 * min(times) / new, 4),
                             "tokens_per_second": round(B * new / min(times))})
                log(f"generate B={B} new={new} cache={use_cache} sliding={sliding}: "
                    f"{rows[-1]['ms_per_token_step']:.3f} ms/step, {rows[-1]['tokens_per_second']} tok/s")
            same = (outs[True] == outs[False]).float().mean().item()
            rows[-2]["speedup_vs_no_cache"] = round(rows[-1]["seconds_best"] / rows[-2]["seconds_best"], 2)
            rows[-2]["greedy_tokens_equal_to_no_cache"] = round(same, 5)
        return rows

    result["kv_cache"] = {
        "how": ("aigc_lib.sampling.generate, greedy (do_sample=False), prompt '\\n' repeated over the batch, "
                "float32 (generate runs no autocast), the trained model in eval mode; one warm-up call per "
                f"setting, then the best of {repeats} calls, each between torch.cuda.synchronize()"),
        "within_context": bench(n_new, False, repeats),
    }
    dump("kv timed")
    if not args.smoke:
        # beyond the context (sliding window) the cache is reset every step: it stops helping at 256
        result["kv_cache"]["sliding_window_500"] = bench(500, True, 1)
        result["kv_cache"]["sliding_window_note"] = (
            "500 new tokens with sliding_window=True: once the text is longer than the context, "
            "generate crops it and recomputes the whole window every step, so the cache serves only "
            "the first steps")
        dump("kv timed")

    # ------------------------------------------------------------------ a sample for the book
    n_chars = 40 if args.smoke else 300
    prompt = torch.tensor([tok.encode("HAMLET.\n")], device=dev)
    ids = generate(model, prompt, n_chars, do_sample=True, temperature=0.8, sliding_window=True,
                   generator=aigc_lib.generator(0))
    prompt1 = torch.tensor([tok.encode("\n")], device=dev)
    ids1 = generate(model, prompt1, n_chars, do_sample=True, sliding_window=True, generator=aigc_lib.generator(0))
    result["sample"] = {
        "how": (f"generate(model, tok.encode('HAMLET.\\n'), {n_chars}, do_sample=True, temperature=0.8, "
                "sliding_window=True, generator=aigc_lib.generator(0)), as in the pretraining chapter's longer sample"),
        "text": tok.decode(ids[0].tolist()),
        "temperature_1_from_newline": tok.decode(ids1[0, 1:].tolist()),
    }
    assert isinstance(model, GPT)
    dump("done")
    log("sample:\n" + result["sample"]["text"])
    log(f"done: {out}")
    return 0


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
