"""Training the VAEs of chapter 3, and the cached models other chapters reuse.

Data convention: MNIST pixels are *binarized*: every time a training digit is used, each pixel
is drawn as x_i ~ Bernoulli(grey level_i) ("dynamic binarization"), and the test digits are
binarized once with a fixed seed (:func:`binarized_mnist`). A Bernoulli likelihood is then a
true probability mass function, so -ELBO and IWAE numbers are log-likelihoods in nats,
comparable with the literature (Burda et al. 2016 use binarized MNIST too).

    model = mnist_vae()                        # the 784-400-20 MLP VAE, trained once and cached
    model, history = get_mnist_vae(z_dim=2)    # any variant; same arguments -> same cached model
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from aigc_lib.cache import load_or_train
from aigc_lib.config import by_profile, device, generator, seed_everything
from aigc_lib.models.vae import VAE, VAEConfig, iwae_bound, negative_elbo

TEST_BINARIZATION_SEED = 1234  # fixed forever: the binarized test set every chapter evaluates on


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw each pixel as Bernoulli(x): grey levels in [0, 1] become 0/1 images."""
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("binarize needs grey levels in [0, 1]; divide 0-255 images by 255 first")
    return torch.bernoulli(x.cpu(), generator=generator).to(x.device)


def binarized_mnist(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` binarized once with a fixed seed: the book's evaluation set, and its labels."""
    from aigc_lib.data import load_mnist

    x, y = load_mnist(split)
    return binarize(x, torch.Generator().manual_seed(TEST_BINARIZATION_SEED)), y


@torch.no_grad()
def evaluate_elbo(model: VAE, x: torch.Tensor, seed: int = 0, batch_size: int = 500) -> dict[str, float]:
    """Mean -ELBO, distortion (-log p(x|z)) and rate (KL) over ``x``, one z per example, in nats."""
    model.eval()
    g = generator(seed)
    dev = next(model.parameters()).device
    rec, kl = [], []
    for i in range(0, len(x), batch_size):
        terms = negative_elbo(model, x[i:i + batch_size].to(dev), beta=1.0, generator=g)
        rec.append(terms.rec.cpu()), kl.append(terms.kl.cpu())
    rec, kl = torch.cat(rec), torch.cat(kl)
    return {"neg_elbo": (rec + kl).mean().item(), "rec": rec.mean().item(), "kl": kl.mean().item()}


@torch.no_grad()
def evaluate_iwae(model: VAE, x: torch.Tensor, k: int, seed: int = 0, batch_size: int = 100) -> float:
    """Mean importance-weighted bound L_k over ``x`` (nats; k = 1 is the ELBO), batch by batch."""
    model.eval()
    g = generator(seed)
    dev = next(model.parameters()).device
    return torch.cat([iwae_bound(model, xb.to(dev), k, generator=g).cpu()
                      for xb in x.split(batch_size)]).mean().item()


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
    dev = device()
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist: dict[str, list[float]] = {"loss": [], "rec": [], "kl": [], "val_neg_elbo": []}
    steps_per_epoch = -(-len(x_train) // batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"VAE ({model.cfg.arch}, z={model.cfg.z_dim})",
               disable=not progress, leave=False)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train), generator=g).split(batch_size):
            x = x_train[idx]
            x = (binarize(x, g) if dynamic_binarization else x).to(dev)
            terms = negative_elbo(model, x, beta=beta, generator=g)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            hist["loss"].append(terms.loss.item())
            hist["rec"].append(terms.rec.mean().item())
            hist["kl"].append(terms.kl.mean().item())
            bar.update()
        if x_val is not None:
            hist["val_neg_elbo"].append(evaluate_elbo(model, x_val)["neg_elbo"])
            model.train()
        bar.set_postfix(loss=f"{hist['loss'][-1]:.1f}")
    bar.close()
    model.eval()
    return hist


def mnist_vae_config(arch: str = "mlp", z_dim: int = 20, beta: float = 1.0, seed: int = 0,
                     epochs: int | None = None, hidden: int | None = None, channels: int = 16,
                     lr: float = 2e-3, batch_size: int = 100) -> dict:
    """Every setting that produces an MNIST VAE (the cache key of :func:`get_mnist_vae`)."""
    if epochs is None:
        epochs = by_profile(quick=30 if arch == "mlp" else 15, full=100 if arch == "mlp" else 50)
    if hidden is None:
        hidden = 400 if arch == "mlp" else 256
    return {"data": "mnist-dynamic-binarization",
            "model": {"arch": arch, "z_dim": z_dim, "hidden": hidden, "channels": channels, "beta": beta},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}}


def get_mnist_vae(progress: bool = True, **overrides) -> tuple[VAE, dict]:
    """(model, history) of a VAE trained on the MNIST training split; trained once, then cached.

    ``overrides`` are :func:`mnist_vae_config`'s arguments (arch, z_dim, beta, seed, epochs, ...).
    The history holds per-step ``loss``/``rec``/``kl``, the test ``val_neg_elbo`` after each
    epoch, and ``train_seconds``.
    """
    from aigc_lib.data import load_mnist

    cfg = mnist_vae_config(**overrides)

    def fit(model: VAE) -> dict:
        x_train, _ = load_mnist("train")
        x_test, _ = binarized_mnist("test")
        return train_vae(model, x_train, x_val=x_test, progress=progress, **cfg["train"])

    return load_or_train(f"mnist-vae-{cfg['model']['arch']}", cfg,
                         build=lambda: VAE(VAEConfig(**cfg["model"])), fit=fit)


def mnist_vae(**overrides) -> VAE:
    """The trained MNIST VAE (default: 784-400-20 MLP, beta = 1), from the cache when possible."""
    return get_mnist_vae(**overrides)[0]


def ring_vae(seed: int = 0, n: int = 4000, z_dim: int = 2, hidden: int = 128, n_layers: int = 2,
             sigma_x: float | None = 0.05, epochs: int | None = None, lr: float = 3e-3,
             batch_size: int = 100, progress: bool = True) -> tuple[VAE, dict]:
    """(model, history) of an MLP VAE with a Gaussian likelihood fit to n points of the 8-Gaussian ring.

    ``sigma_x`` fixes the std of p(x|z); ``None`` learns it, which on this data tends to collapse
    to a broad Gaussian that ignores z (posterior collapse; see the chapter's exercises).
    """
    from aigc_lib.data import ring

    epochs = by_profile(quick=100, full=200) if epochs is None else epochs
    cfg = {"data": {"name": "ring", "n": n, "k": 8, "radius": 2.0, "std": 0.05},
           "model": {"arch": "mlp", "x_shape": (2,), "z_dim": z_dim, "hidden": hidden,
                     "n_layers": n_layers, "likelihood": "gaussian", "sigma_x": sigma_x},
           "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}}

    def fit(model: VAE) -> dict:
        x = ring(n, generator=generator(10_000 + seed))
        return train_vae(model, x, dynamic_binarization=False, progress=progress, **cfg["train"])

    return load_or_train("ring-vae", cfg, build=lambda: VAE(VAEConfig(**cfg["model"])), fit=fit)
