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
import warnings
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
