"""A miniature "text-to-image": a typed number rendered as handwritten digits, and read back.

The request is a string of digits such as ``"2026"``. Each character c becomes a class label y, and
the conditional generator draws x = G(z, y) with its own noise z ~ N(0, I) per digit and per style
(row). Rendering is thus sampling from p(x | y) once per character; different z give different
handwriting. The book's MNIST classifier then reads every rendered digit back, which turns
"did it draw what we asked for?" into a number.

``truncation`` (Brock et al., 2019) draws z from a normal distribution truncated to
``|z_i| <= truncation`` (resampling the entries outside): smaller values trade variety for
fidelity, because the generator has seen most training signal near the middle of the prior.
"""
from __future__ import annotations

import torch
from torch import nn

from aigc_lib.config import model_device


def parse_request(text: str) -> list[int]:
    """The class labels of a digit string: ``"2026" -> [2, 0, 2, 6]``.

    Spaces are ignored; anything else that is not a digit 0-9 raises a ``ValueError``.
    """
    if not isinstance(text, str):
        raise ValueError(f"the request must be a string of digits such as '2026', got {type(text).__name__}")
    chars = text.replace(" ", "")
    if not chars:
        raise ValueError("the request is empty: type at least one digit, e.g. '2026'")
    bad = sorted({c for c in chars if c not in "0123456789"})
    if bad:
        raise ValueError(f"the request {text!r} contains {bad}, which are not digits 0-9; the generator "
                         "only knows the ten MNIST classes, so type digits only (e.g. '2026')")
    return [int(c) for c in chars]


def truncated_normal(shape: tuple[int, ...], truncation: float | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) samples; with ``truncation`` = t, every entry with |z| > t is redrawn until |z| <= t."""
    z = torch.randn(shape, generator=generator)
    if truncation is None:
        return z
    if not truncation > 0:
        raise ValueError(f"truncation must be > 0 (or None for the untruncated prior), got {truncation}")
    outside = z.abs() > truncation
    while outside.any():  # rejection sampling: each round redraws only the entries still outside
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > truncation
    return z


@torch.no_grad()
def render_digits(G: nn.Module, text: str, styles: int = 1, *, truncation: float | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Render ``text`` ``styles`` times: a tensor ``styles x len(digits) x 1 x 28 x 28`` in [0, 1].

    ``G`` is a conditional generator with ``z_dim``, ``n_classes`` (10) and ``to_data`` (the book's
    :class:`~aigc_lib.models.gan.Generator`). Entry ``[s, i]`` is digit ``i`` of the request drawn
    with its own noise ``z[s, i]``.
    """
    labels = parse_request(text)
    if not isinstance(styles, int) or styles < 1:
        raise ValueError(f"styles must be a positive int (how many renderings of the request), got {styles!r}")
    if getattr(G, "n_classes", 0) < 10:
        raise ValueError("render_digits needs a conditional generator over the 10 digits "
                         "(n_classes=10), e.g. aigc_lib.zoo.mnist_gan('cdcgan')[0].G")
    was_training = G.training
    G.eval()
    device = model_device(G)
    n = styles * len(labels)
    z = truncated_normal((n, G.z_dim), truncation, generator).to(device)
    y = torch.tensor(labels * styles, dtype=torch.long, device=device)
    x = G.to_data(G(z, y)).clamp(0, 1).cpu()
    G.train(was_training)
    return x.view(styles, len(labels), *x.shape[1:])


def digit_strip(images: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Glue each row of ``styles x L x 1 x H x W`` images side by side: ``styles x 1 x H x (L W + (L-1) gap)``."""
    if images.dim() != 5:
        raise ValueError(f"images must be styles x L x C x H x W (render_digits' output), got {tuple(images.shape)}")
    S, L, C, H, W = images.shape
    out = images.new_zeros(S, C, H, L * W + (L - 1) * gap)
    for i in range(L):
        out[..., i * (W + gap):i * (W + gap) + W] = images[:, i]
    return out


@torch.no_grad()
def read_back(classifier: nn.Module, images: torch.Tensor, text: str) -> dict:
    """Classify rendered digits and compare with the request.

    ``images`` is ``styles x L x 1 x 28 x 28`` (from :func:`render_digits`). Returns
    ``predicted`` (styles x L digits), ``correct`` (booleans), ``accuracy`` (the share of digits read
    as requested) and ``strings`` (each rendering read back as a string).
    """
    labels = torch.tensor(parse_request(text))
    if images.dim() != 5 or images.shape[1] != len(labels):
        raise ValueError(f"images must be styles x {len(labels)} x 1 x 28 x 28 for the request {text!r}, "
                         f"got {tuple(images.shape)}")
    S, L = images.shape[:2]
    predicted = classifier.predict(images.reshape(S * L, *images.shape[2:])).view(S, L)
    correct = predicted == labels
    return {"predicted": predicted, "correct": correct, "accuracy": correct.float().mean().item(),
            "strings": ["".join(map(str, row.tolist())) for row in predicted]}
