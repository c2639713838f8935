"""Generative adversarial networks: generators, discriminators (critics) and their losses.

A GAN is a two-player game between a generator ``G(z)`` that maps noise ``z ~ N(0, I)`` to a sample
and a discriminator ``D(x)`` that scores how real a sample looks (Goodfellow et al., 2014):

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))].

Every discriminator here returns a *logit* ``l`` with ``D(x) = sigmoid(l)``: the losses are written
on logits with ``softplus`` because ``log(sigmoid(l))`` underflows once ``D`` is confident.
A Wasserstein *critic* (Arjovsky et al., 2017) uses the same networks without any sigmoid.

Models:

* :class:`MLPGenerator`, :class:`MLPDiscriminator`: small MLPs for 2-D toys and flat MNIST;
* :class:`DCGANGenerator`, :class:`DCGANDiscriminator`: the DCGAN shape for 28 x 28 digits
  (100-d noise -> 7x7x128 -> 14x14x64 -> 28x28x1);
* every model takes ``n_classes > 0`` to become conditional: the generator sees a one-hot label
  next to ``z`` (Mirza & Osindero, 2014) and the discriminator adds a projection term
  ``<embed(y), h(x)>`` to its logit (Miyato & Koyama, 2018).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.config import model_device

MNIST_SHAPE = (1, 28, 28)


# ----------------------------------------------------------------------------- input checks
def check_labels(y: torch.Tensor | None, n: int, n_classes: int) -> torch.Tensor | None:
    """Validate class labels for a model with ``n_classes`` classes (0 = unconditional)."""
    if n_classes == 0:
        if y is not None:
            raise ValueError("this model is unconditional (n_classes=0); call it without labels y")
        return None
    if y is None:
        raise ValueError(f"this model is conditional: pass labels y (ints in 0..{n_classes - 1})")
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels y must be integers in 0..{n_classes - 1}, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"labels y must have shape ({n},), one per sample, got {tuple(y.shape)}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0].item()
        raise ValueError(f"label {bad} is outside 0..{n_classes - 1}; ask for a class this model knows")
    return y.long()


def check_shape(x: torch.Tensor, shape: Sequence[int], what: str = "x") -> None:
    """Raise unless ``x`` is a batch N x ``shape``."""
    if not isinstance(x, torch.Tensor) or x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must have shape N x {' x '.join(map(str, shape))}, got {got}")


# ----------------------------------------------------------------------------- generators
class Generator(nn.Module):
    """Shared by all generators: ``z_dim``, ``n_classes``, ``out_shape`` and :meth:`sample`.

    ``forward(z, y)`` returns samples in the network's own range (tanh: [-1, 1] for images);
    :meth:`sample` returns them in data space (images in [0, 1]).
    """

    z_dim: int
    n_classes: int
    out_shape: tuple[int, ...]
    tanh: bool

    def _input(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "noise z")
        y = check_labels(y, len(z), self.n_classes)
        if y is None:
            return z
        return torch.cat([z, F.one_hot(y.to(z.device), self.n_classes).to(z.dtype)], dim=1)

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """Map the network's output to data space: [-1, 1] -> [0, 1] for tanh outputs."""
        return (x + 1) / 2 if self.tanh else x

    @torch.no_grad()
    def sample(self, n: int, y=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` samples in data space; ``y`` (one label per sample, or one int) if conditional."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        device = model_device(self)
        z = torch.randn(n, self.z_dim, generator=generator).to(device)
        y = None if y is None else torch.as_tensor(y).to(device)
        return self.to_data(self(z, y)).cpu()


class MLPGenerator(Generator):
    """x = G(z) by an MLP: ``depth`` hidden layers of ``hidden`` units, output reshaped to ``out_shape``.

    ``tanh=True`` for images (scaled to [-1, 1]); ``False`` for unbounded 2-D toy data.
    """

    def __init__(self, z_dim: int = 2, out_shape: Sequence[int] = (2,), hidden: int = 128,
                 depth: int = 3, n_classes: int = 0, tanh: bool = False):
        super().__init__()
        if depth < 1 or hidden < 1 or z_dim < 1:
            raise ValueError("z_dim, hidden and depth must all be >= 1")
        self.z_dim, self.n_classes, self.tanh = z_dim, n_classes, tanh
        self.out_shape = tuple(out_shape)
        layers, width = [], z_dim + n_classes
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.net(self._input(z, y)).view(len(z), *self.out_shape)
        return torch.tanh(x) if self.tanh else x


class DCGANGenerator(Generator):
    """The DCGAN generator for 28 x 28 images (Radford et al., 2016):

    z (100) -> Linear -> 7x7x(2w) -> ConvT -> 14x14x(w) -> ConvT -> 28x28x1 -> tanh,

    with BatchNorm + ReLU between layers. The default width w = 64 gives 7x7x128 -> 14x14x64.
    """

    def __init__(self, z_dim: int = 100, width: int = 64, n_classes: int = 0):
        super().__init__()
        self.z_dim, self.n_classes, self.width, self.tanh = z_dim, n_classes, width, True
        self.out_shape = MNIST_SHAPE
        self.project = nn.Sequential(
            nn.Linear(z_dim + n_classes, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),  # 7 -> 14
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),                       # 14 -> 28
            nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(self._input(z, y)).view(len(z), 2 * self.width, 7, 7)
        return self.up(h)


# ----------------------------------------------------------------------------- discriminators
class Discriminator(nn.Module):
    """Shared by all discriminators: logit = head(h(x)) + <embed(y), h(x)> (projection, if conditional)."""

    in_shape: tuple[int, ...]
    n_classes: int

    def _head(self, n_features: int) -> None:
        self.linear = nn.Linear(n_features, 1)
        self.embed = nn.Embedding(self.n_classes, n_features) if self.n_classes else None
        if self.embed is not None:  # start as an unconditional D; a random projection of a wide h
            nn.init.zeros_(self.embed.weight)  # would add a huge random term to every logit

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Return one logit per sample (shape N): D(x) = sigmoid(logit); a critic uses it as is."""
        check_shape(x, self.in_shape, "input x")
        y = check_labels(y, len(x), self.n_classes)
        h = self.features(x)
        logit = self.linear(h).squeeze(1)
        if y is not None:
            logit = logit + (self.embed(y.to(x.device)) * h).sum(dim=1)
        return logit


class MLPDiscriminator(Discriminator):
    """D(x) by an MLP on the flattened input; ``depth`` hidden layers of ``hidden`` LeakyReLU units."""

    def __init__(self, in_shape: Sequence[int] = (2,), hidden: int = 128, depth: int = 3,
                 n_classes: int = 0):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ValueError("hidden and depth must be >= 1")
        self.in_shape, self.n_classes = tuple(in_shape), n_classes
        layers, width = [nn.Flatten()], math.prod(self.in_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self._head(hidden)


class DCGANDiscriminator(Discriminator):
    """The DCGAN discriminator for 28 x 28 images: strided convolutions, LeakyReLU(0.2),

    x (1x28x28) -> Conv -> 14x14x(w) -> Conv -> 7x7x(2w) -> flatten -> one logit.

    ``critic=True`` drops BatchNorm: a gradient penalty is taken per sample, and BatchNorm would make
    each output depend on the whole batch (Gulrajani et al., 2017 use no normalisation or LayerNorm).
    """

    def __init__(self, width: int = 64, n_classes: int = 0, critic: bool = False):
        super().__init__()
        self.in_shape, self.n_classes, self.critic = MNIST_SHAPE, n_classes, critic
        norm = nn.Identity() if critic else nn.BatchNorm2d(2 * width)
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),                 # 28 -> 14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=critic), norm, nn.LeakyReLU(0.2),  # 14 -> 7
            nn.Flatten())
        self._head(2 * width * 7 * 7)


# ----------------------------------------------------------------------------- losses
def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)): the best discriminator for a fixed generator."""
    return p_data / (p_data + p_g)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, real = 1, fake = 0:  L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))].

    Minimising L_D is maximising V(D, G). With D = sigmoid(l): -log D = softplus(-l), -log(1-D) = softplus(l).
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The minimax generator loss L_G = E_z[log(1 - D(G(z)))] = -E[softplus(l)].

    Its gradient with respect to the logit is -D(G(z)): it vanishes when D confidently rejects fakes.
    """
    return -F.softplus(fake_logits).mean()


def generator_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss L_G = -E_z[log D(G(z))] = E[softplus(-l)].

    Same fixed point as the minimax loss, but its gradient -(1 - D(G(z))) is largest when D wins.
    """
    return F.softplus(-fake_logits).mean()


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss L_f = E_z[f(G(z))] - E_x[f(x)] (no sigmoid, no log).

    Minimising it over 1-Lipschitz critics f makes -L_f an estimate of the Wasserstein-1 distance.
    """
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN generator loss L_G = -E_z[f(G(z))]."""
    return -fake_scores.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty E_{x_hat}[(||grad f(x_hat)||_2 - 1)^2], x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1].

    It softly enforces the 1-Lipschitz constraint along lines between real and generated samples
    (Gulrajani et al., 2017). ``y`` are the labels of a conditional critic.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches must have the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), generator=generator).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = critic(x_hat, y) if y is not None else critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
