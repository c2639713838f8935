"""The GAN training loop, and the chapter's cached trained GANs.

:func:`train_gan` alternates ``n_critic`` discriminator (critic) steps with one generator step,
for three objectives:

* ``"non-saturating"``: D minimises BCE, G minimises -log D(G(z)) (what everyone uses);
* ``"saturating"``: D minimises BCE, G minimises log(1 - D(G(z))) (the minimax game as written);
* ``"wgan-gp"``: a critic minimises E[f(G(z))] - E[f(x)] + lambda * gradient penalty, and
  G minimises -E[f(G(z))] (Gulrajani et al., 2017).

Trained models that other chapters reuse come from get-or-train functions that go through
:func:`aigc_lib.cache.load_or_train`, so every chapter gets the very same network:
:func:`mnist_dcgan`, :func:`mnist_cdcgan`, :func:`mnist_mlp_gan`, and the ring GANs of
:func:`ring_gan` (several kinds and seeds at once: :func:`ring_gans`).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.cache import load_or_train
from aigc_lib.config import by_profile, device, generator, seed_everything
from aigc_lib.models.gan import (DCGANDiscriminator, DCGANGenerator, Discriminator, Generator,
                                 MLPDiscriminator, MLPGenerator, critic_loss, discriminator_loss,
                                 generator_loss_nonsaturating, generator_loss_saturating,
                                 gradient_penalty, wasserstein_generator_loss)

LOSSES = ("non-saturating", "saturating", "wgan-gp")


def _check_finite(step: int, **losses: torch.Tensor) -> None:
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"{name} became {value.item()} at step {step}: training diverged. Lower the learning "
                "rates, check the data for NaN or infinite values, or use the non-saturating loss.")


@torch.enable_grad()  # callable from inside a no_grad block (e.g. a metric that needs a model)
def train_gan(G: Generator, D: Discriminator, x_data: torch.Tensor, y_data: torch.Tensor | None = None,
              *, steps: int, loss: str = "non-saturating", batch_size: int = 64, lr_g: float = 2e-4,
              lr_d: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), n_critic: int = 1,
              gp_weight: float = 10.0, pack: int = 1, lr_decay: bool = False, snapshot_every: int = 0,
              snapshot_n: int = 64, seed: int = 0, progress: bool = True, desc: str = "GAN") -> dict:
    """Train ``G`` against ``D`` on ``x_data`` (already in G's output range), labels ``y_data`` if conditional.

    Returns a history: per-step ``loss_D`` and ``loss_G`` (for WGAN-GP also ``wasserstein``, the
    critic's estimate E[f(x)] - E[f(G(z))]); with ``snapshot_every > 0``, ``snapshots`` (G's
    samples from one fixed noise batch, in data space) taken at ``snapshot_steps``.
    ``pack=m > 1`` shows D m samples at once, concatenated (PacGAN, Lin et al., 2018): a collapsed
    generator's packs look suspiciously alike, so D can punish missing modes. D's input must then
    be ``m`` times wider (``MLPDiscriminator(in_shape=(m * 2,))`` for 2-D data).
    ``lr_decay=True`` decays both learning rates linearly to zero, which settles the samples
    at the end instead of leaving them oscillating around the equilibrium.
    Raises ``FloatingPointError`` as soon as a loss is NaN or infinite.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if steps < 1 or batch_size < 1 or n_critic < 1:
        raise ValueError("steps, batch_size and n_critic must all be >= 1")
    if (y_data is None) != (G.n_classes == 0) or (y_data is None) != (D.n_classes == 0):
        raise ValueError("pass labels y_data exactly when G and D are conditional (n_classes > 0)")
    if G.n_classes != D.n_classes:
        raise ValueError(f"G has {G.n_classes} classes but D has {D.n_classes}; they must agree")
    if pack < 1 or batch_size % pack or (pack > 1 and G.n_classes):
        raise ValueError(f"pack must be >= 1, divide batch_size ({batch_size}) and is for unconditional GANs")
    if not torch.isfinite(x_data).all():
        raise ValueError("x_data contains NaN or infinite values; clean the data before training")

    packed = (lambda t: t.reshape(len(t) // pack, -1)) if pack > 1 else (lambda t: t)
    gen = seed_everything(seed)
    dev = next(G.parameters()).device
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps if lr_decay else 1.0)
                 for opt in (opt_G, opt_D)]
    def labels(n: int) -> torch.Tensor | None:  # uniform class labels for the generator's step
        return torch.randint(G.n_classes, (n,), generator=gen).to(dev) if G.n_classes else None

    z_fixed = torch.randn(snapshot_n, G.z_dim, generator=gen).to(dev)
    y_fixed = (torch.arange(snapshot_n) % G.n_classes).to(dev) if G.n_classes else None

    history = {"loss_D": [], "loss_G": [], "snapshots": [], "snapshot_steps": []}
    if loss == "wgan-gp":
        history["wasserstein"] = []

    def snapshot(step: int) -> None:
        G.eval()
        with torch.no_grad():
            history["snapshots"].append(G.to_data(G(z_fixed, y_fixed)).cpu())
        history["snapshot_steps"].append(step)
        G.train()

    G.train(), D.train()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress)
    for step in bar:
        if snapshot_every and (step - 1) % snapshot_every == 0:
            snapshot(step - 1)
        for _ in range(n_critic):  # --- discriminator / critic: n_critic steps on fresh batches
            idx = torch.randint(len(x_data), (batch_size,), generator=gen)
            x = x_data[idx].to(dev)
            y = None if y_data is None else y_data[idx].to(dev)
            z = torch.randn(batch_size, G.z_dim, generator=gen).to(dev)
            with torch.no_grad():
                fake = G(z, y)  # fakes get the real batch's labels: D sees each class both ways
            x, fake = packed(x), packed(fake)
            real_out, fake_out = D(x, y), D(fake, y)
            if loss == "wgan-gp":
                w_estimate = (real_out.mean() - fake_out.mean()).item()
                loss_D = critic_loss(real_out, fake_out) + gp_weight * gradient_penalty(D, x, fake, y, gen)
            else:
                loss_D = discriminator_loss(real_out, fake_out)
            _check_finite(step, loss_D=loss_D)
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
        # --- generator: one step; D's parameters get gradients here but opt_D zeroes them first
        y = labels(batch_size)
        fake_out = D(packed(G(torch.randn(batch_size, G.z_dim, generator=gen).to(dev), y)), y)
        if loss == "wgan-gp":
            loss_G = wasserstein_generator_loss(fake_out)
            history["wasserstein"].append(w_estimate)
        elif loss == "saturating":
            loss_G = generator_loss_saturating(fake_out)
        else:
            loss_G = generator_loss_nonsaturating(fake_out)
        _check_finite(step, loss_G=loss_G)
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        for schedule in schedules:
            schedule.step()
        history["loss_D"].append(loss_D.item())
        history["loss_G"].append(loss_G.item())
        if step % 50 == 0:
            bar.set_postfix(loss_D=f"{loss_D.item():.3f}", loss_G=f"{loss_G.item():.3f}")
    if snapshot_every:
        snapshot(steps)
    G.eval(), D.eval()
    return history


class GAN(nn.Module):
    """A generator and its discriminator in one module, so one checkpoint holds both."""

    def __init__(self, G: Generator, D: Discriminator):
        super().__init__()
        self.G, self.D = G, D


# ----------------------------------------------------------------------------- the 8-Gaussian ring
RING_KINDS = ("vanilla", "pacgan", "wgan-gp")


def ring_gan_config(kind: str = "vanilla") -> dict:
    """Hyperparameters of the ring GANs, at one sample budget.

    ``"vanilla"``: BCE against the non-saturating loss; ``"pacgan"``: the same, but D judges packs
    of two samples (Lin et al., 2018); ``"wgan-gp"``: a critic with gradient penalty, 5 critic steps
    per generator step and the small penalty weight the WGAN-GP authors use for 2-D toys.
    The three see the same number of real samples, ``steps * n_critic * batch_size`` (768,000 in
    the quick profile), so that a comparison of them is not a comparison of budgets: PacGAN's
    256-sample batches are 128 packs, and WGAN-GP takes a fifth of the generator steps.
    """
    if kind not in RING_KINDS:
        raise ValueError(f"kind must be one of {RING_KINDS}, got {kind!r}")
    model = {"z_dim": 2, "hidden": 128, "depth": 3}
    data = {"n": 20_000, "k": 8, "radius": 2.0, "std": 0.05}
    steps = by_profile(quick=3000, full=10_000)
    train = {"steps": steps, "loss": "non-saturating", "batch_size": 256,
             "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.5, 0.999), "n_critic": 1, "pack": 1, "lr_decay": True,
             "snapshot_every": 100, "snapshot_n": 1000, "seed": 0}
    if kind == "pacgan":
        train.update(pack=2)
    elif kind == "wgan-gp":
        train.update(loss="wgan-gp", steps=steps // 5, betas=(0.5, 0.9), n_critic=5, gp_weight=0.1,
                     snapshot_every=20)
    return {"model": model, "data": data, "train": train}


def ring_gan(kind: str = "vanilla", progress: bool = True, seed: int | None = None) -> tuple[GAN, dict]:
    """Train (or load) an MLP GAN on the 8-Gaussian ring; returns ``(gan, history)`` with snapshots.

    ``seed`` overrides the configuration's seed (model initialisation, data and noise), so the
    same recipe can be measured across seeds; the default seed is chapter 2's cached model.
    """
    from aigc_lib.data import ring

    cfg = ring_gan_config(kind)
    if seed is not None:
        cfg["train"] = {**cfg["train"], "seed": seed}
    m, d, t = cfg["model"], cfg["data"], cfg["train"]

    def build() -> GAN:
        seed_everything(t["seed"])
        return GAN(MLPGenerator(m["z_dim"], (2,), m["hidden"], m["depth"]),
                   MLPDiscriminator((2 * t["pack"],), m["hidden"], m["depth"])).to(device())

    def fit(gan: GAN) -> dict:
        x = ring(d["n"], d["k"], d["radius"], d["std"], generator=generator(t["seed"]))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny MLPs: one thread is faster, and the run is the same on any CPU
        try:
            return train_gan(gan.G, gan.D, x, **t, progress=progress, desc=f"ring {kind}")
        finally:
            torch.set_num_threads(threads)

    return load_or_train(f"ring-gan-{kind}", cfg, build, fit, version=1)


def _train_ring_gan(kind: str, seed: int) -> None:
    ring_gan(kind, progress=False, seed=seed)


def ring_gans(kinds=RING_KINDS, seeds=(0, 1, 2), workers: int = 2) -> dict[tuple[str, int], tuple[GAN, dict]]:
    """``{(kind, seed): (gan, history)}`` for every kind and seed, cached like :func:`ring_gan`.

    Each ring GAN trains on one thread, so the runs that are not cached yet train ``workers`` at a
    time in separate processes; the results are the same as training them one by one.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from aigc_lib.cache import checkpoint_path

    def cfg_for(kind, seed):
        cfg = ring_gan_config(kind)
        cfg["train"] = {**cfg["train"], "seed": seed}
        return cfg

    runs = [(k, s) for k in kinds for s in seeds]
    missing = [(k, s) for k, s in runs if not checkpoint_path(f"ring-gan-{k}", cfg_for(k, s), 1).exists()]
    if workers > 1 and len(missing) > 1:
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=get_context("spawn")) as pool:
            for done in tqdm(pool.map(_train_ring_gan, *zip(*missing)), total=len(missing), desc="ring GANs"):
                pass
    return {(k, s): ring_gan(k, progress=False, seed=s) for k, s in runs}


# ----------------------------------------------------------------------------- MNIST
MNIST_KINDS = ("mlp", "dcgan", "cdcgan")


def mnist_gan_config(kind: str = "dcgan") -> dict:
    """Hyperparameters of the chapter's MNIST GANs: ``"mlp"``, ``"dcgan"`` or ``"cdcgan"``."""
    if kind not in MNIST_KINDS:
        raise ValueError(f"kind must be one of {MNIST_KINDS}, got {kind!r}")
    train = {"loss": "non-saturating", "batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999),
             "n_critic": 1, "snapshot_every": 0, "snapshot_n": 64, "seed": 0}
    if kind == "mlp":
        model = {"z_dim": 64, "hidden": 256, "depth": 2}
        train.update(steps=by_profile(quick=2000, full=20_000), lr_g=5e-4, lr_d=5e-4)
    else:
        model = {"z_dim": 100, "width": by_profile(quick=32, full=64)}
        train.update(steps=by_profile(quick=1000, full=10_000), lr_g=5e-4, lr_d=5e-4,
                     snapshot_every=by_profile(quick=250, full=2500), snapshot_n=10)
    return {"kind": kind, "model": model, "train": train}


def train_mnist_gan(kind: str = "dcgan", progress: bool = True, seed: int | None = None) -> tuple[GAN, dict]:
    """Train (or load) one of the chapter's MNIST GANs on the train split; returns ``(gan, history)``.

    ``seed`` overrides the configuration's seed (0, the chapter's cached models).
    """
    from aigc_lib.data import load_mnist

    cfg = mnist_gan_config(kind)
    if seed is not None:
        cfg["train"] = {**cfg["train"], "seed": seed}
    m, t = cfg["model"], cfg["train"]
    n_classes = 10 if kind == "cdcgan" else 0

    def build() -> GAN:
        seed_everything(t["seed"])
        if kind == "mlp":
            G = MLPGenerator(m["z_dim"], (1, 28, 28), m["hidden"], m["depth"], tanh=True)
            D = MLPDiscriminator((1, 28, 28), m["hidden"], m["depth"])
        else:
            G = DCGANGenerator(m["z_dim"], m["width"], n_classes)
            D = DCGANDiscriminator(m["width"], n_classes)
        return GAN(G, D).to(device())

    def fit(gan: GAN) -> dict:
        x, y = load_mnist("train")
        return train_gan(gan.G, gan.D, x * 2 - 1, y if n_classes else None, **t,  # tanh range
                         progress=progress, desc=f"MNIST {kind}")

    return load_or_train(f"mnist-gan-{kind}", cfg, build, fit)


def mnist_mlp_gan() -> Generator:
    """The chapter's MLP generator for MNIST (cached): ``G.sample(n)`` gives N x 1 x 28 x 28 in [0, 1]."""
    return train_mnist_gan("mlp")[0].G


def mnist_dcgan() -> Generator:
    """The chapter's DCGAN generator (cached): ``G.sample(n)`` gives N x 1 x 28 x 28 in [0, 1]."""
    return train_mnist_gan("dcgan")[0].G


def mnist_cdcgan() -> Generator:
    """The chapter's conditional DCGAN generator (cached): ``G.sample(n, y)`` draws digits ``y``."""
    return train_mnist_gan("cdcgan")[0].G
