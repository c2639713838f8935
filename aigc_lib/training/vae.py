"""Training and evaluating the VAEs of the VAE chapter.

Data convention: MNIST pixels are *binarized*: every time a training digit is used, each pixel
is drawn as x_i ~ Bernoulli(grey level_i) ("dynamic binarization"), and the test digits are
binarized once with a fixed seed (:func:`binarized_mnist`). A Bernoulli likelihood is then a
true probability mass function, so -ELBO and IWAE numbers are log-likelihoods in nats,
comparable with the literature (Burda et al. 2016 use binarized MNIST too).

The book's trained VAEs (the 784-400-20 MLP VAE and its variants, the ring VAE) are recipes in
:mod:`aigc_lib.zoo`: ``model, history = zoo.mnist_vae(z_dim=2)``.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from aigc_lib.config import device as best_device
from aigc_lib.config import fit_threads, generator, model_device, seed_everything
from aigc_lib.data import load_mnist
from aigc_lib.models.vae import VAE, iwae_bound, negative_elbo
from aigc_lib.training.loop import check_finite

TEST_BINARIZATION_SEED = 1234  # fixed forever: the binarized test set every chapter evaluates on


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw each pixel as Bernoulli(x): grey levels in [0, 1] become 0/1 images."""
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("binarize needs grey levels in [0, 1]; divide 0-255 images by 255 first")
    return torch.bernoulli(x.cpu(), generator=generator).to(x.device)


def binarized_mnist(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` binarized once with a fixed seed: the book's evaluation set, and its labels."""
    x, y = load_mnist(split)
    return binarize(x, torch.Generator().manual_seed(TEST_BINARIZATION_SEED)), y


@torch.no_grad()
def evaluate_elbo(model: VAE, x: torch.Tensor, seed: int = 0, batch_size: int = 500) -> dict[str, float]:
    """Mean -ELBO, distortion (-log p(x|z)) and rate (KL) over ``x``, one z per example, in nats."""
    model.eval()
    g = generator(seed)
    device = model_device(model)
    rec, kl = [], []
    for i in range(0, len(x), batch_size):
        terms = negative_elbo(model, x[i:i + batch_size].to(device), beta=1.0, generator=g)
        rec.append(terms.rec.cpu()), kl.append(terms.kl.cpu())
    rec, kl = torch.cat(rec), torch.cat(kl)
    return {"neg_elbo": (rec + kl).mean().item(), "rec": rec.mean().item(), "kl": kl.mean().item()}


@torch.no_grad()
def evaluate_iwae(model: VAE, x: torch.Tensor, k: int, seed: int = 0, batch_size: int = 100) -> float:
    """Mean importance-weighted bound L_k over ``x`` (nats; k = 1 is the ELBO), batch by batch."""
    model.eval()
    g = generator(seed)
    device = model_device(model)
    bounds = torch.cat([iwae_bound(model, xb.to(device), k, generator=g).cpu() for xb in x.split(batch_size)])
    return check_finite(bounds.mean().item(), "the IWAE bound", advice="Check the inputs for NaN or infinite values.")


def train_vae(model: VAE, x_train: torch.Tensor, *, epochs: int, batch_size: int = 100, lr: float = 1e-3,
              beta: float | None = None, dynamic_binarization: bool = True, seed: int = 0,
              x_val: torch.Tensor | None = None, progress: bool = True) -> dict[str, list[float]]:
    """Minimize rec + beta * KL with Adam; return per-step and (with ``x_val``) per-epoch history.

    ``dynamic_binarization`` redraws 0/1 pixels from the grey levels at every step (use it for
    images with a Bernoulli likelihood; turn it off for 2-D toy data with a Gaussian one).
    Raises FloatingPointError, with advice, if the loss becomes NaN or infinite.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    model.check_input(x_train[:1])
    g = seed_everything(seed)
    device = best_device()
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {"loss": [], "rec": [], "kl": [], "val_neg_elbo": []}
    steps_per_epoch = -(-len(x_train) // batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"VAE ({model.config.arch}, z={model.config.z_dim})",
               disable=not progress, leave=False)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train), generator=g).split(batch_size):
            fit_threads()
            x = x_train[idx]
            x = (binarize(x, g) if dynamic_binarization else x).to(device)
            terms = negative_elbo(model, x, beta=beta, generator=g)
            check_finite(terms.loss, "the VAE loss", len(history["loss"]))
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            history["loss"].append(terms.loss.item())
            history["rec"].append(terms.rec.mean().item())
            history["kl"].append(terms.kl.mean().item())
            bar.update()
        if x_val is not None:
            history["val_neg_elbo"].append(evaluate_elbo(model, x_val)["neg_elbo"])
            model.train()
        bar.set_postfix(loss=f"{history['loss'][-1]:.1f}")
    bar.close()
    model.eval()
    return history
