"""Training a language model: next-token cross-entropy on random windows of a token stream.

The loop of nanoGPT's ``train.py``, in pieces a reader can test one at a time:

* :func:`get_batch`: ``B`` random windows ``x = data[i : i+T]`` and their shift ``y = data[i+1 : i+T+1]``;
* :func:`lr_at`: linear warm-up to ``lr``, then cosine decay to ``min_lr`` (or, with
  ``schedule="wsd"``, a constant ``lr`` and a linear decay over the last steps);
* :func:`configure_optimizer`: AdamW (Loshchilov & Hutter 2019), weight decay on matrices only; or,
  with ``optimizer="muon"``, Muon (Jordan et al. 2024) for the blocks' matrices and AdamW for the rest;
* :func:`train_lm`: gradient clipping, periodic validation, a progress bar, a loss history,
  checkpoint/resume to the same state, a clear error on a NaN loss; mixed precision and
  ``torch.compile`` on CUDA; data parallelism (DDP) when launched by ``torchrun``;
* :func:`evaluate`: the exact mean loss over every token of a text (non-overlapping windows).

The book's trained language models are recipes in :mod:`aigc_lib.zoo`. Several GPUs::

    torchrun --standalone --nproc_per_node=4 -m aigc_lib.zoo shakespeare-char-gpt

trains one with DDP (:func:`setup_distributed`): every process draws the same global batch, trains
on its own slice of it, and DDP averages the gradients, so the run follows the single-process run
on the same global batch.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from aigc_lib.config import fit_threads, model_device, run_seed, smoke
from aigc_lib.training.loop import check_finite
from aigc_lib.training.muon import Muon


SMOKE_EVAL_TOKENS = 4096  # what :func:`evaluate` scores under AIGC_SMOKE=1


@dataclass
class LMTrainConfig:
    steps: int = 2000
    batch_size: int = 12  # the global batch: sequences per optimizer step over all processes
    block_size: int = 64  # tokens per training window (at most the model's context)
    lr: float = 1e-3  # peak learning rate, reached after the warm-up
    min_lr: float = 1e-4  # the cosine decay ends here at the last step
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    eval_interval: int = 250
    eval_batches: int = 20
    seed: int = 0
    mixed_precision: bool = True  # CUDA only: bf16 autocast (fp16 + loss scaling without bf16)
    compile: bool = False  # CUDA only: torch.compile the model
    checkpoint_interval: int = 0  # save a resumable checkpoint every this many steps (0: at the end)
    schedule: str = "cosine"  # "cosine" (decay from the warm-up on) or "wsd" (warm-up, stable, decay)
    decay_fraction: float = 0.2  # "wsd": the share of the steps over which lr falls linearly to min_lr
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for the blocks' matrices, AdamW for the rest
    muon_lr: float = 0.02  # Muon's peak learning rate (it follows the schedule of lr)

    def __post_init__(self):
        for name in ("steps", "batch_size", "block_size", "eval_interval", "eval_batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"LMTrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if not 0 < self.lr or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"schedule must be 'cosine' or 'wsd', got {self.schedule!r}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- pieces
def get_batch(data: torch.Tensor, batch_size: int, block_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows: ``x[b] = data[i_b : i_b+T]``, ``y[b] = data[i_b+1 : i_b+T+1]``."""
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, too few for windows of block_size={block_size} "
                         "plus one target; use more text or a smaller block_size")
    i = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[i[:, None] + offsets].long()
    y = data[i[:, None] + offsets + 1].long()
    return x, y


def lr_at(step: int, config: LMTrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``min_lr``.

    lr(s) = lr * (s+1) / (warmup+1)                                     for s < warmup
    lr(s) = min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2        progress = (s-warmup) / (steps-warmup)

    With ``schedule="wsd"`` (warm-up, stable, decay; Hu et al. 2024) the rate stays at ``lr`` after
    the warm-up and falls linearly to ``min_lr`` over the last ``decay_fraction`` of the steps.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    if config.schedule == "wsd":
        decay_steps = max(1, round(config.decay_fraction * config.steps))
        progress = min(1.0, max(0, step - (config.steps - decay_steps)) / decay_steps)
        return config.lr + (config.min_lr - config.lr) * progress
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Optimizers:
    """Several optimizers stepped as one (Muon for some parameters, AdamW for the others).

    Each param group's ``lr_scale`` is its peak learning rate over ``LMTrainConfig.lr``, so one
    schedule drives them all: ``group["lr"] = lr_at(step) * group["lr_scale"]``.
    """

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, state in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(state)


def configure_optimizer(model: nn.Module, config: LMTrainConfig) -> Optimizers:
    """AdamW; weight decay only on matrices (weights of Linear/Embedding), not biases or norms.

    With ``config.optimizer == "muon"``, the 2-D weights inside the Transformer blocks go to
    :class:`~aigc_lib.training.muon.Muon` instead: momentum whose update is orthogonalised (every
    singular value set to about 1), so each matrix moves in all its directions at once rather than
    mostly along its largest one. Embeddings, the output layer, norms and biases
    stay with AdamW, as in Jordan et al.'s recipe.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    muon = [p for n, p in named if config.optimizer == "muon" and p.dim() == 2 and ".h." in f".{n}"]
    muon_ids = {id(p) for p in muon}
    params = [p for _, p in named if id(p) not in muon_ids]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    optimizers = [torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), **fused)]
    if muon:
        optimizers.append(Muon([{"params": muon, "lr_scale": config.muon_lr / config.lr}], lr=config.muon_lr))
    return Optimizers(*optimizers)


def _autocast(device: torch.device, config: LMTrainConfig):
    """bf16 autocast on CUDA (fp16 if the GPU lacks bf16); full precision elsewhere."""
    if device.type != "cuda" or not config.mixed_precision:
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


@torch.no_grad()
def estimate_loss(model: nn.Module, data: torch.Tensor, config: LMTrainConfig, seed: int) -> float:
    """Mean loss over ``config.eval_batches`` random batches drawn with a fixed ``seed``.

    Fixing the seed makes every evaluation of a run use the same windows, so the validation curve
    moves because the model changes, not because the batches do.
    """
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(run_seed(seed))
    device = model_device(model)
    autocast, _ = _autocast(device, config)
    losses = []
    for _ in range(config.eval_batches):
        x, y = get_batch(data, config.batch_size, config.block_size, g)
        with autocast:
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.item())
    model.train(was_training)
    return sum(losses) / len(losses)


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, block_size: int, batch_size: int = 64,
             progress: bool = False) -> float:
    """The mean next-token loss (nats/token) over *every* token of ``data``.

    ``data`` is cut into non-overlapping windows of ``block_size + 1`` tokens sharing one token at
    each seam, so each of the ``len(data) - 1`` predictions is scored exactly once (the first token
    of each window is predicted with the short context that the window gives it). Under
    ``AIGC_SMOKE=1`` (CI's run of the full profile at toy sizes) only the first
    ``SMOKE_EVAL_TOKENS`` tokens are scored, so that a full-size model is evaluated in seconds on a CPU.
    """
    if smoke():
        data = data[:SMOKE_EVAL_TOKENS]
    if len(data) < 2:
        raise ValueError("evaluate needs at least two tokens (one prediction)")
    was_training = model.training
    model.eval()
    device = model_device(model)
    starts = list(range(0, len(data) - 1, block_size))
    total, count = 0.0, 0
    batches = range(0, len(starts), batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="evaluate", leave=False, mininterval=1.0)
    for b in batches:
        chunk = starts[b:b + batch_size]
        # the last window may be short: score it separately to keep every batch rectangular
        full = [s for s in chunk if s + block_size + 1 <= len(data)]
        short = [s for s in chunk if s + block_size + 1 > len(data)]
        if full:
            w = torch.stack([data[s:s + block_size + 1] for s in full]).long().to(device)
            _, loss = model(w[:, :-1], w[:, 1:])
            total, count = total + loss.item() * w[:, 1:].numel(), count + w[:, 1:].numel()
        for s in short:
            w = data[s:].long().to(device)[None]
            _, loss = model(w[:, :-1], w[:, 1:])
            total, count = total + loss.item() * (w.size(1) - 1), count + w.size(1) - 1
    model.train(was_training)
    return total / count


# ----------------------------------------------------------------------------- distributed
def setup_distributed() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (env ``RANK``, ``WORLD_SIZE``).

    Returns ``(rank, world_size)``; ``(0, 1)`` when not launched by torchrun. NCCL on GPUs, gloo
    on CPUs. Each process then uses GPU ``LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------- the loop
def _state(model, optimizer, scaler, step, generator, history, config) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "step": step,
            "batch_rng": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": history, "config": config.to_dict()}


def train_lm(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor,
             config: LMTrainConfig, *, checkpoint: str | Path | None = None, stop_at: int | None = None,
             on_eval: Callable[[int, nn.Module, dict], None] | None = None,
             progress: bool = True) -> dict:
    """Train ``model`` (``forward(idx, targets) -> (logits, loss)``) in place; return its history.

    * ``checkpoint``: a file to resume from if it exists, and to save to every
      ``config.checkpoint_interval`` steps and at the end (weights, optimizer, step, random states,
      history): a resumed run continues exactly where the saved one was.
    * ``stop_at``: stop (and save) after this many steps; call again later to resume.
    * ``on_eval(step, model, history)``: called after each validation (e.g. to draw samples).

    The history holds ``train_loss`` and ``lr`` per step, ``eval_step``/``val_loss``/``train_eval_loss``
    per validation with ``eval_steps_seconds`` (the training time so far, validations left out),
    ``tokens_per_step``, ``steps_seconds`` (the steps alone), ``loop_seconds`` (with the validations)
    and ``steps_per_second``. A loss that is
    NaN or infinite raises ``FloatingPointError`` with advice.
    """
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes "
                         f"({world}) so every process gets an equal slice of the global batch")
    block = getattr(getattr(model, "config", None), "block_size", None)
    if block is not None and config.block_size > block:
        raise ValueError(f"training windows of block_size={config.block_size} exceed the model's context "
                         f"({block}); lower LMTrainConfig.block_size or build a longer model")
    device = model_device(model)
    optimizer = configure_optimizer(model, config)
    autocast, amp_dtype = _autocast(device, config)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    generator = torch.Generator().manual_seed(run_seed(config.seed))  # the same on every process: same global batch
    history: dict = {"train_loss": [], "lr": [], "eval_step": [], "val_loss": [], "train_eval_loss": [],
                     "tokens_per_step": config.batch_size * config.block_size, "world_size": world}
    step = 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state["config"] != config.to_dict():
            raise ValueError(f"checkpoint {checkpoint} was written with a different LMTrainConfig; "
                             "delete it or resume with the same configuration")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        generator.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]

    def save() -> None:
        if checkpoint is not None and rank == 0:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(_state(model, optimizer, scaler, step, generator, history, config), tmp)
            os.replace(tmp, checkpoint)
        if world > 1:
            dist.barrier()

    trained = model
    if config.compile and device.type == "cuda":
        trained = torch.compile(trained)
    if world > 1:
        trained = DDP(trained, device_ids=[device.index] if device.type == "cuda" else None)

    def validate() -> None:
        history["eval_step"].append(step)
        history.setdefault("eval_steps_seconds", []).append(history.get("steps_seconds", 0.0))
        history["val_loss"].append(estimate_loss(model, val_data, config, seed=config.seed + 1))
        history["train_eval_loss"].append(estimate_loss(model, train_data, config, seed=config.seed + 2))
        if on_eval is not None:
            model.eval()
            on_eval(step, model, history)
            model.train()

    last = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        # few redraws: each one is a message to a notebook's front end
        bar = tqdm(total=config.steps, initial=step, desc="train", leave=False, mininterval=1.0)
    model.train()
    start, start_step = time.perf_counter(), step
    if step == 0:
        validate()
    local = config.batch_size // world
    while step < last:
        fit_threads()  # outside the step's timer: the cores other processes leave free
        step_start = time.perf_counter()
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        x, y = get_batch(train_data, config.batch_size, config.block_size, generator)
        # this process's slice of the global batch; DDP averages the slices' gradients
        x, y = x[rank * local:(rank + 1) * local].to(device), y[rank * local:(rank + 1) * local].to(device)
        with autocast:
            _, loss = trained(x, y)
        check_finite(loss, f"the training loss (lr={lr:.2e})", step, advice=(
            "Lower the learning rate, keep gradient clipping on (grad_clip > 0), check the data for "
            "out-of-range ids, or turn off mixed precision; the last checkpoint (if any) is intact."))
        if scaler is not None:
            scaler.scale(loss).backward()
            for opt in optimizer.optimizers:  # GradScaler works on torch optimizers, one at a time
                scaler.unscale_(opt)
        else:
            loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if scaler is not None:
            for opt in optimizer.optimizers:
                scaler.step(opt)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.detach()
        if world > 1:  # log the global batch's loss, the same number on every process
            dist.all_reduce(loss_value, op=dist.ReduceOp.SUM)
            loss_value /= world
        history["train_loss"].append(loss_value.item())
        history["lr"].append(lr)
        history["steps_seconds"] = history.get("steps_seconds", 0.0) + time.perf_counter() - step_start
        step += 1
        if bar is not None:
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", refresh=False)
            bar.update(1)
        if step % config.eval_interval == 0 or step == config.steps:
            validate()
        if config.checkpoint_interval and step % config.checkpoint_interval == 0 and step < last:
            save()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    history["loop_seconds"] = history.get("loop_seconds", 0.0) + seconds
    history["steps_per_second"] = (step - start_step) / seconds if seconds > 0 else float("nan")
    save()
    model.eval()
    return history
