"""Load a trained model if a checkpoint exists, else train it and save one.

Checkpoints live in :func:`aigc_lib.config.cache_dir` and are keyed by everything that produced
them: a name, the training configuration, the profile and a version number. Change any of these
and the model is retrained. A checkpoint that cannot be read, or that does not fit the model, is
reported and retrained; it is never used silently.

Typical use in a notebook::

    model, history = load_or_train("mnist-vae", config, build=lambda: VAE(**config["model"]),
                                   fit=lambda m: train_vae(m, data, **config["train"]))

The book's own trained models go through it via their recipes (:mod:`aigc_lib.zoo`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from aigc_lib.config import cache_dir, profile, seed_offset, smoke


class CacheWarning(UserWarning):
    """A checkpoint was unreadable or did not match, and is being rebuilt."""


def cache_key(name: str, config: dict, version: int = 0) -> str:
    """A stable hash of what produced a checkpoint."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"cache name must be a non-empty word without slashes or spaces, got {name!r}")
    blob = json.dumps({"name": name, "config": config, "version": version, "profile": profile(),
                       **({"seed_offset": seed_offset()} if seed_offset() else {}),
                       **({"smoke": True} if smoke() else {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def checkpoint_path(name: str, config: dict, version: int = 0) -> Path:
    return cache_dir() / f"{name}-{cache_key(name, config, version)[:16]}.pt"


def _save(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save never leaves a half-written checkpoint


def cached(name: str, config: dict, compute: Callable[[], Any], *, version: int = 0) -> Any:
    """Return ``compute()``, computing it only if no valid checkpoint exists.

    The result must be made of tensors, numbers, strings, lists and dicts (it is loaded with
    ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects).
    """
    key = cache_key(name, config, version)
    path = checkpoint_path(name, config, version)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("key") != key:
                raise ValueError("it was written for a different name, configuration or profile")
            return saved["payload"]
        except Exception as exc:  # noqa: BLE001 - any failure means: rebuild
            warnings.warn(f"Checkpoint {path} is unusable ({exc}); deleting it and recomputing.",
                          CacheWarning, stacklevel=2)
            path.unlink(missing_ok=True)
    payload = compute()
    _save(path, {"key": key, "name": name, "config": config, "payload": payload})
    return payload


def load_or_train(name: str, config: dict, build: Callable[[], nn.Module],
                  fit: Callable[[nn.Module], Any], *, version: int = 0) -> tuple[nn.Module, Any]:
    """Build a model and fill it from the cache, or train it with ``fit(model)`` and cache it.

    Returns ``(model, history)`` where ``history`` is whatever ``fit`` returned (loss curves,
    metrics) plus ``history["train_seconds"]`` when ``fit`` returns a dict. The model is in eval
    mode. A checkpoint whose weights do not fit ``build()``'s model is reported and retrained.
    """
    model = build()

    def train() -> dict:
        start = time.perf_counter()
        history = fit(model)
        seconds = time.perf_counter() - start
        if isinstance(history, dict):
            history = {**history, "train_seconds": seconds}
        return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": history}

    payload = cached(name, config, train, version=version)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        warnings.warn(f"Checkpoint for {name!r} does not fit the model ({exc}); retraining.",
                      CacheWarning, stacklevel=2)
        checkpoint_path(name, config, version).unlink(missing_ok=True)
        model = build()
        payload = cached(name, config, train, version=version)
        model.load_state_dict(payload["state_dict"])
    return model.eval(), payload["history"]
