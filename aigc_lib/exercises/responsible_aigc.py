"""The responsible-AIGC chapter's checked exercises: the watermark's z-score, absmax int8 quantization."""
import torch

from aigc_lib.compression import absmax_quantize
from aigc_lib.exercises.core import exercise
from aigc_lib.watermark import z_score as _z_score


@exercise(reference=_z_score)
def z_score(g):
    """(n_green, n_tokens, gamma): counts as tensors, one per text."""
    yield torch.tensor([25.0]), torch.tensor([100.0]), 0.25          # exactly gamma T green: z = 0
    yield torch.tensor([0.0, 10.0, 50.0]), torch.tensor([10.0, 10.0, 200.0]), 0.5
    T = torch.randint(20, 400, (6,), generator=g).float()
    yield (torch.rand(6, generator=g) * T).round(), T, 0.25


@z_score.mistake("divide by the standard deviation sqrt(T gamma (1 - gamma)), not by the variance")
def _(n_green, n_tokens, gamma):
    return (n_green - gamma * n_tokens) / (n_tokens * gamma * (1 - gamma))


@z_score.mistake("a binomial count has variance T gamma (1 - gamma): you left out the (1 - gamma)")
def _(n_green, n_tokens, gamma):
    return (n_green - gamma * n_tokens) / torch.sqrt(n_tokens * gamma)


@z_score.mistake("z grows with sqrt(T): (|s|_G - gamma T) / sqrt(T gamma (1 - gamma)); you standardised the "
                 "green *fraction* without the factor sqrt(T)")
def _(n_green, n_tokens, gamma):
    return (n_green / n_tokens - gamma) / (gamma * (1 - gamma)) ** 0.5


def _absmax_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``compression.absmax_quantize(w, bits=8)``: int8 codes q and per-row scales, w ~ scale * q."""
    return absmax_quantize(w, bits=8)


@exercise(reference=_absmax_int8)
def absmax_int8(g):
    """w: a matrix (rows, columns); returns (q, scale) with scale of shape (rows, 1)."""
    yield torch.tensor([[1.0, -0.5, 0.25], [-2.0, 0.0, 1.0]])
    yield torch.tensor([[0.3, 0.1, -0.3, 0.0]])
    yield torch.randn(4, 16, generator=g)
    yield torch.randn(8, 32, generator=g) * torch.logspace(-3, 1, 8)[:, None]   # rows of very different size


def _codes(w, scale, q_max=127):
    return torch.round(w / scale).clamp(-q_max, q_max).to(torch.int8), scale


@absmax_int8.mistake("one scale per *row* (shape rows x 1): a single scale for the whole matrix wastes the "
                     "int8 range of the rows with small weights")
def _(w):
    return _codes(w, w.abs().max() / 127)


@absmax_int8.mistake("int8 codes are symmetric in [-127, 127]: scale = max |w| / 127, not / 128")
def _(w):
    return _codes(w, w.abs().amax(1, keepdim=True) / 128)


@absmax_int8.mistake("round w / scale to the nearest integer: converting to int8 truncates towards zero")
def _(w):
    scale = w.abs().amax(1, keepdim=True) / 127
    return (w / scale).to(torch.int8), scale
