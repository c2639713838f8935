"""Profile, device, seeding and the cache directory.

The book runs in two profiles that share one code path:

* ``quick``: CPU, minutes, offline, on the data that packages ship;
* ``full``: GPU, the full datasets, bigger models and more steps.

``AIGC_PROFILE`` picks one; unset means ``full`` when CUDA is available, else ``quick``.
Notebooks read their sizes through :func:`by_profile` and branch on nothing else.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("quick", "full")
T = TypeVar("T")


def profile() -> str:
    """The active profile: ``AIGC_PROFILE`` if set, else ``full`` with CUDA, else ``quick``."""
    name = os.environ.get("AIGC_PROFILE", "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(
            f"AIGC_PROFILE={name!r} is not a profile; valid profiles are {', '.join(PROFILES)} "
            "(or leave it unset to choose by hardware)."
        )
    return name


def by_profile(quick: T, full: T) -> T:
    """Return ``quick`` or ``full`` according to the active profile."""
    return quick if profile() == "quick" else full


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU generator seeded likewise."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cache_dir() -> Path:
    """Where trained models and downloaded data live: ``AIGC_CACHE`` or ``~/.cache/aigc_lib``."""
    root = os.environ.get("AIGC_CACHE") or Path.home() / ".cache" / "aigc_lib"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
