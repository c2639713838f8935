"""The diffusion chapter's models: a class-conditional U-Net on MNIST pixels, an MLP denoiser on the
8-Gaussian ring, and an MLP denoiser on the latents of the VAE chapter's VAE.

Images come out of the pixel model in [-1, 1]; :func:`to_unit` maps them to [0, 1] for the
classifier and MNIST-FID, and :func:`digit_samples` does it for pixel and latent models alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aigc_lib.config import by_profile, device, generator, model_device, pinned_threads, seed_everything
from aigc_lib.data import load_mnist, ring
from aigc_lib.models.diffusion import Diffusion, LatentDiffusion, MLPDenoiser, MLPDenoiserConfig
from aigc_lib.models.unet import UNet, UNetConfig
from aigc_lib.training.diffusion import train_diffusion
from aigc_lib.zoo.images import MNISTVAE
from aigc_lib.zoo.recipe import Recipe

RING_SCALE = 0.5  # the ring has radius 2; the model sees it scaled to radius 1, like data in [-1, 1]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Images from the model's [-1, 1] scale back to [0, 1] (clamped), for the classifier and FID."""
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def digit_samples(model: Diffusion | LatentDiffusion, n: int, labels: torch.Tensor | None = None, seed: int = 0,
                  vae=None, **sample_kwargs) -> torch.Tensor:
    """``n`` digits in [0, 1] (N x 1 x 28 x 28) from a pixel or a latent diffusion model.

    ``labels``: one class per digit for a conditional model (None: the unconditional model);
    ``vae``: the decoder of a :class:`LatentDiffusion`; ``sample_kwargs`` go to ``sample``
    (``steps``, ``sampler``, ``eta``, ``guidance``). The noise comes from ``generator(seed)``.
    """
    kwargs = dict(y=labels, generator=generator(seed), **sample_kwargs)
    if isinstance(model, LatentDiffusion):
        if vae is None:
            raise ValueError("a latent diffusion model needs the VAE that decodes its latents: pass vae=")
        return model.sample(vae, n, **kwargs).clamp(0, 1)
    return to_unit(model.sample(n, **kwargs))


def balanced_labels(n: int, n_classes: int = 10) -> torch.Tensor:
    """0, 1, ..., n_classes - 1, 0, 1, ...: n labels, every class (almost) equally often."""
    if n < 1 or n_classes < 1:
        raise ValueError(f"need n >= 1 and n_classes >= 1, got {n}, {n_classes}")
    return torch.arange(n) % n_classes


@dataclass
class DiffusionTraining:
    """The settings of :func:`~aigc_lib.training.diffusion.train_diffusion` a recipe chooses."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    p_uncond: float = 0.0  # > 0: drop labels this often, for classifier-free guidance
    ema_decay: float = 0.995
    seed: int = 0


@dataclass
class MNISTDiffusion(Recipe):
    """A class-conditional U-Net diffusion model of MNIST pixels, labels dropped 10% of the time."""

    name = "mnist-diffusion"
    chapter, cost = "diffusion", "170 s"
    smoke_settings = dict(steps=3, batch_size=16)
    unet: UNetConfig = field(default_factory=lambda: by_profile(
        quick=UNetConfig(channels=32, patch=2, mult=(1, 2), blocks=1, attn_levels=(1,), n_classes=10),
        full=UNetConfig(channels=64, patch=1, mult=(1, 2, 2), blocks=2, attn_levels=(2,), n_classes=10)))
    T: int = 1000
    schedule: str = "squaredcos_cap_v2"
    train: DiffusionTraining = field(default_factory=lambda: by_profile(
        quick=DiffusionTraining(steps=1500, batch_size=64, lr=2e-3, p_uncond=0.1, ema_decay=0.995),
        full=DiffusionTraining(steps=30_000, batch_size=128, lr=5e-4, p_uncond=0.1, ema_decay=0.9995)))
    threads: int = 0  # 0: PyTorch's default (all cores); convolutions use them well

    def build(self) -> Diffusion:
        seed_everything(self.train.seed)
        return Diffusion(UNet(self.unet), self.T, self.schedule, clip=1.0).to(device())

    def fit(self, model: Diffusion, progress: bool) -> dict:
        x, y = load_mnist("train")
        with pinned_threads(self.threads):
            return train_diffusion(model, 2 * x - 1, y, **vars(self.train), progress=progress,
                                   desc="MNIST U-Net diffusion")


@dataclass
class RingDiffusion(Recipe):
    """A diffusion model of the 8-Gaussian ring, with an MLP denoiser.

    The model sees the ring scaled by ``RING_SCALE``; its samples divided by it are ring points.
    """

    name = "ring-diffusion"
    chapter, cost = "diffusion", "18 s, on one core"
    smoke_settings = dict(steps=10, n=2000)
    net: MLPDenoiserConfig = field(default_factory=lambda: MLPDenoiserConfig(dim=2, hidden=128, n_layers=3))
    T: int = 1000
    schedule: str = "squaredcos_cap_v2"
    n: int = 20_000
    train: DiffusionTraining = field(default_factory=lambda: DiffusionTraining(
        steps=by_profile(quick=3000, full=10_000)))

    def build(self) -> Diffusion:
        seed_everything(self.train.seed)
        return Diffusion(MLPDenoiser(self.net), self.T, self.schedule, clip=None).to(device())

    def fit(self, model: Diffusion, progress: bool) -> dict:
        x = RING_SCALE * ring(self.n, generator=generator(self.train.seed))
        with pinned_threads(1):  # a tiny MLP: one thread is as fast, and the run is the same on any CPU
            return train_diffusion(model, x, **vars(self.train), progress=progress, desc="ring diffusion")


@dataclass
class MNISTLatentDiffusion(Recipe):
    """A class-conditional diffusion model of the 20-d latents of the VAE chapter's MLP VAE.

    ``model.sample(vae, n, steps=..., y=..., guidance=...)`` gives images in [0, 1].
    """

    name = "mnist-latent-diffusion"
    chapter, cost = "diffusion", "30 s on one core, after the VAE"
    smoke_settings = dict(steps=10)
    net: MLPDenoiserConfig = field(default_factory=lambda: MLPDenoiserConfig(
        dim=20, hidden=by_profile(quick=256, full=512), n_layers=3, n_classes=10))
    T: int = 1000
    schedule: str = "squaredcos_cap_v2"
    train: DiffusionTraining = field(default_factory=lambda: DiffusionTraining(
        steps=by_profile(quick=2000, full=20_000), p_uncond=0.1))
    vae: MNISTVAE = field(default_factory=MNISTVAE)

    def __post_init__(self):
        if self.net.dim != self.vae.model.z_dim:
            raise ValueError(f"the denoiser reads {self.net.dim}-d points but the VAE has "
                             f"{self.vae.model.z_dim} latent dimensions")

    def build(self) -> LatentDiffusion:
        seed_everything(self.train.seed)
        net = MLPDenoiser(self.net)
        return LatentDiffusion(Diffusion(net, self.T, self.schedule, clip=None), self.net.dim).to(device())

    def fit(self, model: LatentDiffusion, progress: bool) -> dict:
        vae, _ = self.vae.load(progress=False)
        x, y = load_mnist("train")
        with torch.no_grad():
            z = vae.encode(x.to(model_device(vae)))[0].cpu()
        model.z_mean.copy_(z.mean(0)), model.z_std.copy_(z.std(0))
        z = (z - model.z_mean.cpu()) / model.z_std.cpu()
        with pinned_threads(1):
            return train_diffusion(model.diffusion, z, y, **vars(self.train), progress=progress,
                                   desc="latent diffusion")
