"""The GAN training loop, and the chapter's cached trained GANs.

:func:`train_gan` alternates ``n_critic`` discriminator (critic) steps with one generator step,
for three objectives:

* ``"non-saturating"``: D minimises BCE, G minimises -log D(G(z)) (what everyone uses);
* ``"saturating"``: D minimises BCE, G minimises log(1 - D(G(z))) (the minimax game as written);
* ``"wgan-gp"``: a critic minimises E[f(G(z))] - E[f(x)] + lambda * gradient penalty, and
  G minimises -E[f(G(z))] (Gulrajani et al., 2017).

:class:`GANTrainConfig` holds its settings (the book's trained GANs, in :mod:`aigc_lib.zoo`, keep
one each); :class:`GAN` puts a generator and its discriminator in one module, one checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads, model_device, seed_everything
from aigc_lib.models.gan import (DCGANDiscriminator, DCGANGenerator, Discriminator, Generator,
                                 MLPDiscriminator, MLPGenerator, critic_loss, discriminator_loss,
                                 generator_loss_nonsaturating, generator_loss_saturating,
                                 gradient_penalty, wasserstein_generator_loss)
from aigc_lib.training.loop import check_finite

LOSSES = ("non-saturating", "saturating", "wgan-gp")


@dataclass
class GANTrainConfig:
    """The settings of :func:`train_gan` (its keyword arguments, with the same defaults)."""

    steps: int = 1000
    loss: str = "non-saturating"
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1
    gp_weight: float = 10.0
    pack: int = 1
    lr_decay: bool = False
    snapshot_every: int = 0
    snapshot_n: int = 64
    seed: int = 0


class GAN(nn.Module):
    """A generator and its discriminator in one module, so one checkpoint holds both."""

    def __init__(self, G: Generator, D: Discriminator):
        super().__init__()
        self.G, self.D = G, D


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
    device = model_device(G)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps if lr_decay else 1.0)
                 for opt in (opt_G, opt_D)]
    def labels(n: int) -> torch.Tensor | None:  # uniform class labels for the generator's step
        return torch.randint(G.n_classes, (n,), generator=gen).to(device) if G.n_classes else None

    z_fixed = torch.randn(snapshot_n, G.z_dim, generator=gen).to(device)
    y_fixed = (torch.arange(snapshot_n) % G.n_classes).to(device) if G.n_classes else None

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
        fit_threads()
        if snapshot_every and (step - 1) % snapshot_every == 0:
            snapshot(step - 1)
        for _ in range(n_critic):  # --- discriminator / critic: n_critic steps on fresh batches
            idx = torch.randint(len(x_data), (batch_size,), generator=gen)
            x = x_data[idx].to(device)
            y = None if y_data is None else y_data[idx].to(device)
            z = torch.randn(batch_size, G.z_dim, generator=gen).to(device)
            with torch.no_grad():
                fake = G(z, y)  # fakes get the real batch's labels: D sees each class both ways
            x, fake = packed(x), packed(fake)
            real_out, fake_out = D(x, y), D(fake, y)
            if loss == "wgan-gp":
                w_estimate = (real_out.mean() - fake_out.mean()).item()
                loss_D = critic_loss(real_out, fake_out) + gp_weight * gradient_penalty(D, x, fake, y, gen)
            else:
                loss_D = discriminator_loss(real_out, fake_out)
            check_finite(loss_D, "loss_D", step)
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
        # --- generator: one step; D's parameters get gradients here but opt_D zeroes them first
        y = labels(batch_size)
        fake_out = D(packed(G(torch.randn(batch_size, G.z_dim, generator=gen).to(device), y)), y)
        if loss == "wgan-gp":
            loss_G = wasserstein_generator_loss(fake_out)
            history["wasserstein"].append(w_estimate)
        elif loss == "saturating":
            loss_G = generator_loss_saturating(fake_out)
        else:
            loss_G = generator_loss_nonsaturating(fake_out)
        check_finite(loss_G, "loss_G", step)
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
