"""Making a trained model cheaper: int8 quantization, magnitude pruning, knowledge distillation.

* **Quantization** stores a weight matrix ``W`` as int8 codes ``q`` and one scale per output row,
  ``W ~ s * q`` with ``s_i = max_j |W_ij| / 127`` and ``q = round(W / s)`` (symmetric "absmax"
  quantization): a quarter of fp32's bytes, and a rounding error of at most ``s_i / 2`` per
  weight. :func:`absmax_quantize` writes this out; :func:`quantize_int8` applies PyTorch's dynamic
  quantization (int8 weights, activations quantized on the fly, int8 matrix products) to every
  ``nn.Linear`` of a model, for inference on a CPU. PyTorch's dynamic quantization keeps one
  scale per weight tensor and zero point 0, not the per-row scales of :func:`absmax_quantize`; the
  affine scheme with zero points and integer-only arithmetic is Jacob et al.'s (2018).
* **Pruning** sets the weights of smallest magnitude to zero (Han et al. 2015):
  :func:`prune_magnitude` removes a share ``sparsity`` of every matrix with
  ``torch.nn.utils.prune``.
* **Distillation** trains a small *student* to match a large *teacher*'s softened distribution
  (Hinton et al. 2015): :func:`distillation_loss` is ``T^2 KL(p_teacher^T || p_student^T)``, and
  :class:`Distillation` wraps student and teacher so that the book's ``train_lm`` trains it
  unchanged.
"""
from __future__ import annotations

import copy
import io
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.sampling import generate
from aigc_lib.timing import best_time


# ----------------------------------------------------------------------------- size and speed
def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's ``state_dict`` as ``torch.save`` writes it: its size on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights and biases of the model's linear layers, fp32 or int8-quantized."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            tensors = (module.weight, module.bias)
        elif isinstance(module, QuantizedLinear):
            tensors = (module.weight(), module.bias())  # int8 weight (1 byte each), fp32 bias
        else:
            continue
        total += sum(t.numel() * t.element_size() for t in tensors if t is not None)
    return total


def tokens_per_second(model: nn.Module, vocab_size: int, *, batch_size: int = 1, context: int = 64,
                      n_tokens: int = 200, repeats: int = 3) -> float:
    """Generation speed: tokens/s of greedy ``generate`` from a full ``context``-long window.

    Sliding-window decoding without a KV cache, so every step runs the model on a
    ``batch_size x context`` window and the matrix products are what is timed. The best of
    ``repeats`` timings is returned (the one least disturbed by the machine).
    """
    if n_tokens < 1 or repeats < 1:
        raise ValueError("n_tokens and repeats must be >= 1")
    ids = torch.randint(vocab_size, (batch_size, context), generator=torch.Generator().manual_seed(0))
    seconds, _ = best_time(lambda: generate(model, ids, n_tokens, sliding_window=True, use_cache=False), repeats)
    return batch_size * n_tokens / seconds


# ----------------------------------------------------------------------------- quantization
def absmax_quantize(w: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization: ``w ~ scale * q``, ``q`` integers in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``.

    Returns ``(q, scale)`` with ``q`` int8 (for ``bits <= 8``) of ``w``'s shape and ``scale`` of shape
    ``rows x 1``; ``scale * q`` is the dequantized matrix, within ``scale / 2`` of ``w`` everywhere.
    """
    if w.dim() != 2:
        raise ValueError(f"absmax_quantize takes a matrix (rows x columns), got shape {tuple(w.shape)}")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8 (the codes are stored as int8), got {bits}")
    q_max = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / q_max
    q = torch.round(w / scale).clamp(-q_max, q_max).to(torch.int8)
    return q, scale


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are int8 (PyTorch dynamic quantization), for CPU inference.

    Weights are stored as int8 with one scale per matrix; activations are quantized on the fly at
    every call. Embeddings and LayerNorms stay fp32. The copy is in eval mode and cannot be trained.
    """
    if any(p.is_cuda for p in model.parameters()):
        raise ValueError("dynamic int8 quantization runs on the CPU: pass model.cpu()")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:  # pragma: no cover - depends on the torch build
        raise ImportError("this torch has no torch.ao.quantization; install torchao and use "
                          "torchao.quantization.quantize_ instead") from exc
    engines = torch.backends.quantized.supported_engines
    if "x86" not in engines and "fbgemm" not in engines and "qnnpack" in engines:  # ARM CPUs
        torch.backends.quantized.engine = "qnnpack"
    with warnings.catch_warnings():  # torch.ao.quantization warns that it moves to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


# ----------------------------------------------------------------------------- pruning
def _prunable(model: nn.Module) -> list[nn.Linear]:
    """Every ``nn.Linear`` whose weight is not tied to an embedding (pruning it would prune both)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [m for m in model.modules() if isinstance(m, nn.Linear) and id(m.weight) not in embeddings]


def prune_magnitude(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy of ``model`` with the ``sparsity`` share of smallest-|w| weights of every linear layer set to 0.

    Each matrix is pruned on its own (``torch.nn.utils.prune.l1_unstructured``) and the mask is
    made permanent. Linear layers tied to an embedding (the GPT's output head) are left alone.
    """
    from torch.nn.utils import prune

    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the share of weights set to zero, in [0, 1); got {sparsity}")
    pruned = copy.deepcopy(model)
    for module in _prunable(pruned):
        prune.l1_unstructured(module, "weight", amount=sparsity)
        prune.remove(module, "weight")
    return pruned


def weight_sparsity(model: nn.Module) -> float:
    """Share of zero weights over the prunable linear layers."""
    layers = _prunable(model)
    if not layers:
        raise ValueError("the model has no linear layers to measure")
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return zeros / sum(m.weight.numel() for m in layers)


# ----------------------------------------------------------------------------- distillation
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 2.0) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over all positions (Hinton et al. 2015).

    Logits are ``... x V``. The ``T^2`` keeps the gradient's size comparable across temperatures
    (the softened gradients shrink as ``1 / T^2``). At ``T = 1`` this is the cross-entropy to the
    teacher's distribution minus the teacher's entropy.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must have one shape (same vocabulary), got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    V = student_logits.size(-1)
    log_p_s = F.log_softmax(student_logits.reshape(-1, V).float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.reshape(-1, V).float() / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


class Distillation(nn.Module):
    """Student + frozen teacher, trained by :func:`aigc_lib.training.lm.train_lm` like any GPT.

    ``forward(idx, targets)`` returns the student's ``(logits, loss)``. In training mode the loss is
    ``alpha * distillation_loss + (1 - alpha) * cross-entropy to the data``; in eval mode it is the
    student's cross-entropy alone, so validation curves compare with models trained without a
    teacher.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, alpha: float = 0.5, temperature: float = 2.0):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha (the weight of the teacher's term) must be in [0, 1], got {alpha}")
        self.student, self.teacher = student, teacher.eval()
        self.teacher.requires_grad_(False)
        self.alpha, self.temperature = alpha, temperature
        self.config = getattr(student, "config", None)

    def train(self, mode: bool = True) -> "Distillation":
        super().train(mode)
        self.teacher.eval()  # the teacher never trains (and keeps dropout off)
        return self

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits, ce = self.student(idx, targets)
        if targets is None or not self.training or self.alpha == 0:
            return logits, ce
        with torch.no_grad():
            teacher_logits, _ = self.teacher(idx)
        kd = distillation_loss(logits, teacher_logits, self.temperature)
        return logits, self.alpha * kd + (1 - self.alpha) * ce
