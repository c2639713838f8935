"""The book's trained MNIST models: the classifier, the GANs (GAN chapter), the VAEs (VAE chapter)
and the responsible-AIGC chapter's detectors of generated digits."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aigc_lib.config import by_profile, device, generator, seed_everything
from aigc_lib.data import load_mnist
from aigc_lib.models.classifier import MNISTClassifier
from aigc_lib.models.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from aigc_lib.models.vae import VAE, VAEConfig
from aigc_lib.training.gan import GAN, GANTrainConfig, train_gan
from aigc_lib.training.supervised import train_classifier
from aigc_lib.training.vae import binarized_mnist, train_vae
from aigc_lib.zoo.recipe import Recipe

GAN_KINDS = ("mlp", "dcgan", "cdcgan")
FAMILIES = ("DCGAN", "MLP GAN", "VAE")  # the generators the responsible-AIGC chapter's detectors learn to spot


@dataclass
class Classifier(Recipe):
    """The MNIST classifier that reads generated digits back and defines MNIST-FID."""

    name = "mnist-classifier"
    chapter, cost = "gan", "14 s"
    smoke_settings = dict(epochs=1)
    n_features: int = 128
    dropout: float = 0.3
    epochs: int = field(default_factory=lambda: by_profile(quick=8, full=4))
    batch_size: int = 64
    lr: float = 2e-3
    augment: bool = True
    seed: int = 0

    def build(self) -> MNISTClassifier:
        return MNISTClassifier(self.n_features, self.dropout)

    def fit(self, model: MNISTClassifier, progress: bool) -> dict:
        history = train_classifier(model, *load_mnist("train"), epochs=self.epochs, batch_size=self.batch_size,
                                   lr=self.lr, augment=self.augment, seed=self.seed, progress=progress)
        x_test, y_test = load_mnist("test")
        history["test_accuracy"] = (model.predict(x_test) == y_test).float().mean().item()
        return history


@dataclass
class MNISTGAN(Recipe):
    """The MNIST GANs: an MLP GAN, a DCGAN and a conditional DCGAN.

    ``kind`` is "mlp", "dcgan" or "cdcgan" (conditional on the digit).
    """

    name, variant = "mnist-gan", "kind"
    chapter, cost = "gan", "mlp 20 s, dcgan 50 s, cdcgan 55 s"
    smoke_settings = dict(steps=4, batch_size=16, snapshot_every=2)
    kind: str = "dcgan"
    z_dim: int | None = None  # default: 64 (mlp), 100 (DCGAN)
    hidden: int = 256  # mlp
    depth: int = 2  # mlp
    width: int = field(default_factory=lambda: by_profile(quick=32, full=64))  # DCGAN channels
    train: GANTrainConfig | None = None  # default: the chapter's settings for this kind

    def __post_init__(self):
        if self.kind not in GAN_KINDS:
            raise ValueError(f"kind must be one of {GAN_KINDS}, got {self.kind!r}")
        if self.z_dim is None:
            self.z_dim = 64 if self.kind == "mlp" else 100
        if self.train is None:
            self.train = (GANTrainConfig(steps=by_profile(quick=2000, full=20_000), lr_g=5e-4, lr_d=5e-4)
                          if self.kind == "mlp" else
                          GANTrainConfig(steps=by_profile(quick=1000, full=10_000), lr_g=5e-4, lr_d=5e-4,
                                         snapshot_every=by_profile(quick=250, full=2500), snapshot_n=10))

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.kind}"

    def build(self) -> GAN:
        seed_everything(self.train.seed)
        if self.kind == "mlp":
            G = MLPGenerator(self.z_dim, (1, 28, 28), self.hidden, self.depth, tanh=True)
            D = MLPDiscriminator((1, 28, 28), self.hidden, self.depth)
        else:
            n_classes = 10 if self.kind == "cdcgan" else 0
            G, D = DCGANGenerator(self.z_dim, self.width, n_classes), DCGANDiscriminator(self.width, n_classes)
        return GAN(G, D).to(device())

    def fit(self, gan: GAN, progress: bool) -> dict:
        x, y = load_mnist("train")
        return train_gan(gan.G, gan.D, x * 2 - 1, y if self.kind == "cdcgan" else None,  # tanh range
                         **vars(self.train), progress=progress, desc=f"MNIST {self.kind}")


@dataclass
class MNISTVAE(Recipe):
    """The MNIST VAEs: the 784-400-20 MLP VAE and a convolutional one.

    Trained on dynamically binarized MNIST; ``arch`` is "mlp" (the default) or "conv".
    """

    name, variant = "mnist-vae", "arch"
    chapter, cost = "vae", "mlp 11 s, conv 14 s"
    smoke_settings = dict(epochs=1)
    arch: str = "mlp"
    model: VAEConfig | None = None  # default: 400 hidden units (mlp) or 256 (conv), 20-d latent
    epochs: int | None = None  # default: 30 (mlp) or 15 (conv) in the quick profile
    batch_size: int = 100
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self):
        mlp = self.arch == "mlp"
        if self.model is None:
            self.model = VAEConfig(arch=self.arch, hidden=400 if mlp else 256, channels=16)
        if self.model.arch != self.arch:
            raise ValueError(f"model.arch={self.model.arch!r} does not match arch={self.arch!r}")
        if self.epochs is None:
            self.epochs = by_profile(quick=30 if mlp else 15, full=100 if mlp else 50)

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.arch}"

    def build(self) -> VAE:
        return VAE(self.model)

    def fit(self, model: VAE, progress: bool) -> dict:
        return train_vae(model, load_mnist("train")[0], x_val=binarized_mnist("test")[0], epochs=self.epochs,
                         batch_size=self.batch_size, lr=self.lr, seed=self.seed, progress=progress)


def _source(family: str) -> Recipe:
    return MNISTVAE() if family == "VAE" else MNISTGAN(kind="dcgan" if family == "DCGAN" else "mlp")


def generated_digits(family: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples (N x 1 x 28 x 28 in [0, 1]) of one of the book's MNIST generators (``FAMILIES``).

    "DCGAN" and "MLP GAN" are the GAN chapter's generators; "VAE" is the VAE chapter's MLP VAE (the
    decoder's Bernoulli means ``E[x | z]``, the images that chapter shows and scores).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    model = _source(family).load(progress=False)[0]
    return (model if family == "VAE" else model.G).sample(n, generator=generator(seed)).cpu()


@dataclass
class FakeDetector(Recipe):
    """A detector of generated digits, one per generator family.

    The classifier's network with two outputs: real (0) or generated (1) by ``family``.
    """

    name, variant = "fake-detector", "family"
    chapter, cost = "responsible_aigc", "8 s each, after its generator"
    smoke_settings = dict(epochs=1)
    family: str = "DCGAN"
    n_features: int = 128
    dropout: float = 0.3
    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    augment: bool = False
    seed: int = 0
    fake_seed: int = 100  # the generator's samples for training (tests use other seeds)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")

    def to_dict(self) -> dict:  # the detector depends on its generator: retrain when that changes
        return {**super().to_dict(), "generator": _source(self.family).to_dict()}

    def build(self) -> MNISTClassifier:
        return MNISTClassifier(self.n_features, self.dropout, n_classes=2)

    def fit(self, model: MNISTClassifier, progress: bool) -> dict:
        x_real, _ = load_mnist("train")
        x_fake = generated_digits(self.family, len(x_real), seed=self.fake_seed)
        x = torch.cat([x_real, x_fake])
        y = torch.cat([torch.zeros(len(x_real)), torch.ones(len(x_fake))]).long()
        return train_classifier(model, x, y, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                augment=self.augment, seed=self.seed, progress=progress)
