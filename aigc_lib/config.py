"""Profile, device, seeding and the cache directory.

The book runs in two profiles that share one code path:

* ``quick``: CPU, minutes, offline, on the data that packages ship;
* ``full``: GPU, the full datasets, bigger models and more steps.

``AIGC_PROFILE`` picks one; unset means ``full`` when CUDA is available, else ``quick``.
Notebooks read their sizes through :func:`by_profile` and branch on nothing else.

``AIGC_SMOKE=1`` (with ``AIGC_PROFILE=full``) is the full profile at toy sizes, for CI: every code
path the full profile takes (its data loaders, model shapes, training loops) runs on a CPU in
minutes, because each recipe trains a few steps (:meth:`aigc_lib.zoo.Recipe.load`) and
:func:`by_profile` returns its ``smoke`` value where a notebook gives one. Its models are cached
apart from the real ones, and nothing it produces means anything beyond "it runs".
"""
from __future__ import annotations

import itertools
import os
import random
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

import torch

PROFILES = ("quick", "full")
T = TypeVar("T")


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def profile() -> str:
    """The active profile: ``AIGC_PROFILE`` if set, else ``full`` with CUDA, else ``quick``.

    ``full`` chosen on a machine without CUDA warns (once) what it will cost.
    """
    name = os.environ.get("AIGC_PROFILE", "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(
            f"AIGC_PROFILE={name!r} is not a profile; valid profiles are {', '.join(PROFILES)} "
            "(or leave it unset to choose by hardware)."
        )
    if name == "full" and not torch.cuda.is_available() and not smoke():
        _warn_once("full-without-cuda", "AIGC_PROFILE=full without a CUDA GPU: the full datasets and "
                   "models train on " + str(device()) + ", which takes hours per chapter instead of "
                   "minutes; AIGC_PROFILE=quick runs every chapter in minutes on a CPU.")
    return name


_FULL = object()


def smoke() -> bool:
    """True under ``AIGC_SMOKE=1``: the full profile's code paths at toy sizes (see the module docstring)."""
    raw = os.environ.get("AIGC_SMOKE", "").strip()
    if raw in ("", "0"):
        return False
    if raw != "1":
        raise ValueError(f"AIGC_SMOKE={raw!r}: use 1 (the full profile at toy sizes, for CI) or leave it unset.")
    if os.environ.get("AIGC_PROFILE", "").strip().lower() != "full":
        raise ValueError("AIGC_SMOKE=1 runs the full profile at toy sizes: set AIGC_PROFILE=full with it, "
                         "or unset AIGC_SMOKE.")
    return True


def by_profile(quick: T, full: T, smoke: T = _FULL) -> T:  # type: ignore[assignment]
    """Return ``quick`` or ``full`` according to the active profile (``smoke``, if given, under AIGC_SMOKE=1)."""
    if profile() == "quick":
        return quick
    return full if smoke is _FULL or not _smoke() else smoke


_smoke = smoke  # by_profile's argument shadows the function


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        # Operations MPS lacks run on the CPU instead of raising (set before the first MPS op).
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
        _warn_once("mps", "using Apple's MPS backend: operations it does not implement (and float64) "
                   "fall back to the CPU, which is slower but gives the same results.")
        return torch.device("mps")
    return torch.device("cpu")


def reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """True if a TCP connection to ``host:port`` opens within ``timeout`` seconds (a cheap "am I online")."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# The thread policy. PyTorch's CPU kernels run on an OpenMP pool whose idle threads spin, holding
# their core while they wait for the next parallel region. On an idle machine that is the fastest
# choice; but when another process needs one of 2 cores, the spinning thread fights it and a small
# training step runs 3-4 times slower than on one thread (measured: a step of the pretraining
# chapter's GPT, 39 ms idle with 2 threads, 157 ms with 2 threads beside a busy process, 63-76 ms
# with 1 thread either way). Making threads sleep instead (OMP_WAIT_POLICY=PASSIVE) avoids the stall but costs
# 1.7x on an idle machine (65 ms). So the book keeps the spinning pool and sizes it to the cores
# other processes leave free, measured from /proc and re-checked while training.
_threads = {"last": None, "checked": 0.0, "ours": None, "most": None, "pinned": 0}


def _cpu_jiffies() -> tuple[int, int, int] | None:
    """(busy, total) jiffies of the whole machine and this process's own, from /proc (Linux only)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), int(own[11]) + int(own[12])


def fit_threads(every: float = 1.0) -> int:
    """Size PyTorch's thread pool to the cores that other processes leave free; return the count.

    Cheap enough to call on every training step: it looks at the machine at most once per
    ``every`` seconds (the CPU time other processes used since the last look). It leaves the count
    alone when ``OMP_NUM_THREADS`` or ``AIGC_THREADS`` is set, inside :func:`pinned_threads`, when
    other code has set its own count, and on systems without /proc (macOS, Windows), where
    PyTorch's default stays. ``AIGC_THREADS=n`` fixes the count, e.g. for timing runs.
    """
    state, now = _threads, time.monotonic()
    fixed = os.environ.get("AIGC_THREADS", "").strip()
    if fixed:
        if not fixed.isdigit() or int(fixed) < 1:
            raise ValueError(f"AIGC_THREADS={fixed!r}: give a positive number of threads, or unset it.")
        if torch.get_num_threads() != int(fixed):
            torch.set_num_threads(int(fixed))
        return int(fixed)
    if state["pinned"] or "OMP_NUM_THREADS" in os.environ or now - state["checked"] < every:
        return torch.get_num_threads()
    if state["ours"] is not None and torch.get_num_threads() != state["ours"]:
        return torch.get_num_threads()  # someone else chose a count: respect it
    state["most"] = state["most"] or torch.get_num_threads()
    sample = _cpu_jiffies()
    if sample is None:
        return torch.get_num_threads()
    last, state["last"], state["checked"] = state["last"], sample, now
    if last is None or sample[1] <= last[1]:
        return torch.get_num_threads()
    cpus = os.cpu_count() or 1
    others = cpus * max(0, (sample[0] - last[0]) - (sample[2] - last[2])) / (sample[1] - last[1])
    # Shed a thread once others use more than half a core; take it back only below 0.3 of one
    # (while we spin 2 threads beside a busy process, that process gets about 2/3 of a core).
    threads = int(cpus - others + 0.5)
    if threads > torch.get_num_threads():
        threads = int(cpus - others + 0.3)
    threads = max(1, min(state["most"], threads))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    state["ours"] = threads
    return threads


@contextmanager
def pinned_threads(n: int):
    """Run a block with ``n`` PyTorch threads, which :func:`fit_threads` leaves alone (0: no pin).

    Tiny models (the ring GANs, the toy tasks) train as fast on one thread, repeat bit for bit
    whatever the machine's thread count, and cannot stall when other jobs share the cores.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"pin a positive number of threads (or 0 for no pin), got {n!r}")
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
        _threads["pinned"] += 1
    try:
        yield
    finally:
        if n > 0:
            _threads["pinned"] -= 1
            torch.set_num_threads(old)


def thread_policy() -> dict:
    """What :func:`fit_threads` sees and chose: the thread count, its ceiling and the CPU count."""
    return {"threads": torch.get_num_threads(), "ceiling": _threads["most"], "cpus": os.cpu_count(),
            "fixed_by": next((k for k in ("AIGC_THREADS", "OMP_NUM_THREADS") if k in os.environ), None)}


def _first_fit() -> None:
    """At import: look at the machine twice, 0.2 s apart, and size the pool before any work."""
    if _cpu_jiffies() is not None and not {"AIGC_THREADS", "OMP_NUM_THREADS"} & set(os.environ):
        fit_threads(every=0.0)
        time.sleep(0.2)
        fit_threads(every=0.0)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a module's parameters (or, failing that, buffers) live on; the CPU if it has neither."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def seed_offset() -> int:
    """``AIGC_SEED_OFFSET`` (default 0): shifts every seed the book uses, to test claims on other seeds.

    ``make robust`` executes the chapters with an offset. Every seed that goes through
    :func:`seed_everything` or :func:`generator` moves by the offset, and the cache key includes it,
    so a shifted run never reuses a model trained under the book's own seeds. Data splits do not
    move: they define the data sets, not a run.
    """
    raw = os.environ.get("AIGC_SEED_OFFSET", "0").strip() or "0"
    try:
        offset = int(raw)
    except ValueError:
        raise ValueError(f"AIGC_SEED_OFFSET={raw!r} is not an integer; use e.g. 0 (the book's seeds) or 1.") from None
    if offset < 0:
        raise ValueError(f"AIGC_SEED_OFFSET must be >= 0, got {offset}")
    return offset


def run_seed(seed: int = 0) -> int:
    """``seed`` shifted by :func:`seed_offset` (for APIs that take an int seed, e.g. NumPy, ``random``)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed + 1000 * seed_offset()  # far apart, so offset 1's seeds are not offset 0's seed + 1


def generator(seed: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (shifted by :func:`seed_offset`)."""
    return torch.Generator().manual_seed(run_seed(seed))


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU generator seeded likewise.

    The seed is shifted by :func:`seed_offset` (0 unless ``AIGC_SEED_OFFSET`` is set). It also asks
    PyTorch for deterministic kernels where it has them (``warn_only``: an operation without a
    deterministic version warns instead of failing). On a CPU that makes a run repeat bit for bit
    on the same machine and thread count; CONTRIBUTING.md says what still differs across machines.
    """
    seed = run_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def cache_dir() -> Path:
    """Where trained models and downloaded data live: ``AIGC_CACHE`` or ``~/.cache/aigc_lib``."""
    root = os.environ.get("AIGC_CACHE") or Path.home() / ".cache" / "aigc_lib"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


_first_fit()
