"""Image repair with a generative model as the prior: inpainting and denoising.

A mask ``m`` marks what we know: ``m = 1`` on visible pixels, ``m = 0`` on the missing region.
A generative model says which complete images are likely; repair looks for the likely image that
agrees with what we see, and keeps the visible pixels as they are:

    x_repaired = m * x + (1 - m) * x_model.

Three ways to find ``x_model``:

* :func:`inpaint_iterative`: start with the hole blank and repeat "encode, decode, paste the
  visible pixels back": each round projects the image closer to what the VAE can reconstruct;
* :func:`inpaint_latent`: a latent code fitted to the visible pixels,

      z* = argmin_z  -log p(x_visible | z) + w * ||z||^2 / 2,    x_model = decode(z*),

  whose first term only looks at visible pixels and whose second is the N(0, I) prior. Where the
  decoder defines the likelihood (the VAE's Bernoulli decoder, with w = 1), z* is the maximum a
  posteriori code; on grey-level pixels the Bernoulli term is the expected negative
  log-likelihood of the image binarized with probabilities x, as the VAE was trained. Searching a
  generator's latent space for the code that explains the visible pixels is the idea of Yeh et
  al. (2017), who used a GAN with a prior loss from its discriminator and blending;
  :func:`inpaint_vae` starts the search from the VAE's encoder, :func:`inpaint_gan` from several
  random z (see there for what that search is and is not);
* :func:`denoise_vae`: the same with every pixel visible and a Gaussian noise model.

:func:`masked_mse` scores a repair on the missing pixels only (the visible ones are copied).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import model_device

MASKS = ("left", "right", "top", "bottom", "center", "random")
LIKELIHOODS = ("bernoulli", "gaussian")


def make_mask(kind: str, shape: tuple[int, ...] = (1, 28, 28), *, size: int = 12, p: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A float mask of ``shape`` (C x H x W) with 1 = visible, 0 = missing.

    ``left``/``right``/``top``/``bottom``: that half is missing; ``center``: a ``size`` x ``size``
    square in the middle is missing; ``random``: each pixel is missing with probability ``p``.
    """
    if kind not in MASKS:
        raise ValueError(f"mask kind must be one of {MASKS}, got {kind!r}")
    if len(shape) != 3:
        raise ValueError(f"shape must be C x H x W, e.g. (1, 28, 28), got {shape}")
    C, H, W = shape
    m = torch.ones(shape)
    if kind == "left":
        m[..., :W // 2] = 0
    elif kind == "right":
        m[..., W // 2:] = 0
    elif kind == "top":
        m[..., :H // 2, :] = 0
    elif kind == "bottom":
        m[..., H // 2:, :] = 0
    elif kind == "center":
        if not 0 < size <= min(H, W):
            raise ValueError(f"size must be in 1..{min(H, W)}, got {size}")
        top, left = (H - size) // 2, (W - size) // 2
        m[..., top:top + size, left:left + size] = 0
    else:
        if not 0 <= p <= 1:
            raise ValueError(f"p (the share of missing pixels) must be in [0, 1], got {p}")
        m = (torch.rand(shape, generator=generator) >= p).float()
    return m


def check_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` expanded to ``x``'s shape; it must be one C x H x W mask or one per image."""
    if not isinstance(mask, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise ValueError("x and mask must be tensors")
    if x.dim() != 4:
        raise ValueError(f"x must be a batch N x C x H x W, got shape {tuple(x.shape)}")
    if tuple(mask.shape) not in (tuple(x.shape), tuple(x.shape[1:])):
        raise ValueError(f"the mask has shape {tuple(mask.shape)}, but the images are {tuple(x.shape)}: give "
                         f"one mask of shape {tuple(x.shape[1:])} for all images or one per image "
                         f"({tuple(x.shape)}); make_mask(kind, shape={tuple(x.shape[1:])}) builds one")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask values must be 0 (missing) or 1 (visible)")
    return mask.to(x).expand_as(x)


def apply_mask(x: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """The damaged image: visible pixels kept, missing ones set to ``fill``."""
    mask = check_mask(mask, x)
    return mask * x + (1 - mask) * fill


def paste(x: torch.Tensor, mask: torch.Tensor, x_model: torch.Tensor) -> torch.Tensor:
    """m * x + (1 - m) * x_model: keep what we saw, take the rest from the model."""
    mask = check_mask(mask, x)
    if x_model.shape != x.shape:
        raise ValueError(f"x_model must have x's shape {tuple(x.shape)}, got {tuple(x_model.shape)}")
    return mask * x + (1 - mask) * x_model


def masked_mse(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over the *missing* pixels: sum (1-m)(x_hat-x)^2 / sum (1-m)."""
    mask = check_mask(mask, x)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat must have x's shape {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    missing = (1 - mask).flatten(1)
    if (missing.sum(1) == 0).any():
        raise ValueError("some image has no missing pixels: the masked-region error is undefined")
    return (missing * (x_hat - x).flatten(1) ** 2).sum(1) / missing.sum(1)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block (we optimise z, not the model)."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


# ----------------------------------------------------------------------------- iterative projection
@torch.no_grad()
def inpaint_iterative(vae: nn.Module, x: torch.Tensor, mask: torch.Tensor, n_iter: int = 20,
                      fill: float = 0.0) -> torch.Tensor:
    """Repeat x_{k+1} = m * x + (1 - m) * E[x | z = mu(x_k)], starting from the damaged image."""
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    mask = check_mask(mask, x)
    home, x, mask = x.device, x.to(model_device(vae)), mask.to(model_device(vae))
    xk = apply_mask(x, mask, fill)
    for _ in range(n_iter):
        mu, _ = vae.encode(xk.clamp(0, 1))
        xk = paste(x, mask, vae.mean(mu))
    return xk.to(home)


# ----------------------------------------------------------------------------- MAP latent code
def _neg_log_lik(x_model: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, likelihood: str,
                 sigma: float) -> torch.Tensor:
    """-log p(x_visible | z) per image, up to a constant: Bernoulli or Gaussian(sigma) pixels."""
    if likelihood == "bernoulli":
        p = x_model.clamp(1e-6, 1 - 1e-6)
        nll = F.binary_cross_entropy(p, x, reduction="none")
    else:
        nll = (x_model - x) ** 2 / (2 * sigma ** 2)
    return (mask * nll).flatten(1).sum(1)


def inpaint_latent(decode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask: torch.Tensor,
                   z0: torch.Tensor, *, steps: int = 200, lr: float = 0.05, prior_weight: float = 1.0,
                   likelihood: str = "bernoulli", sigma: float = 0.1,
                   progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit z to the visible pixels by Adam on  -log p(x_vis | z) + w ||z||^2 / 2, one z per image.

    ``decode(z)`` must return pixel means in [0, 1] shaped like ``x``. Returns ``(x_repaired, z,
    loss)`` with the per-image final loss (lower = the model explains the visible pixels better).
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not lr > 0 or not sigma > 0 or prior_weight < 0:
        raise ValueError(f"need lr > 0, sigma > 0 and prior_weight >= 0, got {lr}, {sigma}, {prior_weight}")
    mask = check_mask(mask, x)
    if z0.dim() != 2 or len(z0) != len(x):
        raise ValueError(f"z0 must be N x z_dim with N = {len(x)} (one code per image), got {tuple(z0.shape)}")
    z = z0.detach().clone().to(x.device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        x_model = decode(z)
        if x_model.shape != x.shape:
            raise ValueError(f"decode(z) returned shape {tuple(x_model.shape)}, expected {tuple(x.shape)}")
        return x_model, _neg_log_lik(x_model, x, mask, likelihood, sigma) + prior_weight * 0.5 * (z ** 2).sum(1)

    for _ in tqdm(range(steps), desc="inpaint", disable=not progress, leave=False):
        _, loss = objective()
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # images are independent: the sum's gradient is each image's own
        opt.step()
    with torch.no_grad():
        x_model, loss = objective()
    return paste(x, mask, x_model.detach()), z.detach(), loss.detach()


def inpaint_vae(vae: nn.Module, x: torch.Tensor, mask: torch.Tensor, *, steps: int = 200, lr: float = 0.05,
                n_iter: int = 5, progress: bool = False) -> torch.Tensor:
    """VAE inpainting: ``n_iter`` projection rounds give a start z0 = mu(x), then the MAP code z*.

    The likelihood is the VAE's own Bernoulli p(x | z) and the prior its N(0, I).
    """
    home, x, mask = x.device, x.to(model_device(vae)), check_mask(mask, x).to(model_device(vae))
    with frozen(vae):
        start = inpaint_iterative(vae, x, mask, n_iter) if n_iter else apply_mask(x, mask)
        with torch.no_grad():
            z0, _ = vae.encode(start.clamp(0, 1))
        repaired, _, _ = inpaint_latent(vae.mean, x, mask, z0, steps=steps, lr=lr, likelihood="bernoulli",
                                        progress=progress)
    return repaired.to(home)


def inpaint_gan(G: nn.Module, x: torch.Tensor, mask: torch.Tensor, *, labels: torch.Tensor | None = None,
                restarts: int = 4, steps: int = 200, lr: float = 0.05, sigma: float = 0.1,
                generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """GAN inpainting by latent search: z fitted so that G(z) matches the visible pixels.

    A GAN has no encoder, so z starts at ``restarts`` random draws per image (and, for a conditional
    G without ``labels``, once for every class); the candidate that fits the visible pixels best wins.
    The fit minimises ``sum(m * (G(z) - x)^2) / (2 sigma^2) + ||z||^2 / 2``, a squared error on the
    visible pixels plus the N(0, I) prior of z. A GAN defines no likelihood, so this is a MAP code
    only under the Gaussian pixel model (std ``sigma``) assumed here, and Adam from a few starts
    finds a local minimum, not the global one. Nor is it Yeh et al.'s (2017) method, which fits a
    weighted L1 context loss plus a prior loss from the discriminator and then blends the result
    into the image; this is the simpler search that shares its idea.
    """
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive int, got {restarts!r}")
    mask = check_mask(mask, x)
    N, n_classes = len(x), getattr(G, "n_classes", 0)
    device = model_device(G)
    if n_classes and labels is None:  # unknown digit: try every class, `restarts` times each
        K = n_classes * restarts
        ys = torch.arange(n_classes).repeat_interleave(restarts).repeat(N)
    elif n_classes:
        labels = torch.as_tensor(labels).long()
        if labels.shape != (N,):
            raise ValueError(f"labels must hold one class per image, shape ({N},), got {tuple(labels.shape)}")
        K, ys = restarts, labels.repeat_interleave(restarts)
    else:
        K, ys = restarts, None
    ys = None if ys is None else ys.to(device)
    xr, mr = x.repeat_interleave(K, 0).to(device), mask.repeat_interleave(K, 0).to(device)  # row i*K + k
    z0 = torch.randn(N * K, G.z_dim, generator=generator)
    with frozen(G):
        repaired, _, loss = inpaint_latent(lambda z: G.to_data(G(z, ys)), xr, mr, z0.to(device), steps=steps, lr=lr,
                                           likelihood="gaussian", sigma=sigma, progress=progress)
    best = loss.view(N, K).argmin(1)
    return repaired.view(N, K, *x.shape[1:])[torch.arange(N, device=best.device), best].to(x.device)


# ----------------------------------------------------------------------------- denoising
def add_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + sigma * eps, eps ~ N(0, I), clipped back to the valid pixel range [0, 1]."""
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return (x + sigma * torch.randn(x.shape, generator=generator).to(x)).clamp(0, 1)


def denoise_vae(vae: nn.Module, x_noisy: torch.Tensor, *, sigma: float = 0.3, steps: int = 100,
                lr: float = 0.05) -> torch.Tensor:
    """Denoise by the MAP code under Gaussian pixel noise of std ``sigma``, started at mu(x_noisy).

    ``steps = 0`` is the plain encode-decode projection E[x | z = mu(x_noisy)].
    """
    home, x_noisy = x_noisy.device, x_noisy.to(model_device(vae))
    with frozen(vae):
        with torch.no_grad():
            z0, _ = vae.encode(x_noisy.clamp(0, 1))
        z = z0
        if steps:
            ones = torch.ones(x_noisy.shape[1:])
            _, z, _ = inpaint_latent(vae.mean, x_noisy, ones, z0, steps=steps, lr=lr, likelihood="gaussian",
                                     sigma=sigma)
        with torch.no_grad():
            return vae.mean(z).to(home)  # every pixel is observed (noisily): the answer is the model's image
