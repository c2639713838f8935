"""Variational autoencoders (Kingma & Welling 2014; Rezende et al. 2014) and their bounds.

The generative model is  z ~ p(z) = N(0, I),  x ~ p_theta(x | z)  (Bernoulli pixels for images,
a Gaussian for 2-D toy data). The encoder q_phi(z | x) = N(mu(x), diag sigma^2(x)) approximates
the intractable posterior, and both are trained by maximizing the evidence lower bound

    ELBO(x) = E_q[log p_theta(x | z)] - KL(q_phi(z | x) || p(z))  <=  log p_theta(x).

Everything is per example and in nats. ``negative_elbo`` is the training loss (with a beta that
weights the KL, Higgins et al. 2017); ``iwae_bound`` is the importance-weighted bound of Burda et
al. (2016), which is tighter than the ELBO and approaches log p(x) as k grows.

    model = VAE(VAEConfig(arch="mlp", z_dim=20))
    loss = negative_elbo(model, x).loss          # x: N x 1 x 28 x 28, values in [0, 1]
    log_px = iwae_bound(model, x, k=100)         # N lower bounds on log p(x), tighter than the ELBO
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.config import model_device

ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    arch: str = "mlp"                        # "mlp" (any x_shape) or "conv" (1 x 28 x 28 only)
    x_shape: tuple[int, ...] = (1, 28, 28)   # one example's shape
    z_dim: int = 20
    hidden: int = 400                        # MLP width; the conv net's widest linear layer
    channels: int = 32                       # conv: channels of the first conv layer (doubled after)
    n_layers: int = 1                        # MLP: hidden layers in encoder and in decoder
    likelihood: str = "bernoulli"            # p(x|z): "bernoulli" for [0, 1] pixels, "gaussian" for R^d
    beta: float = 1.0                        # weight of the KL term in the training loss
    sigma_x: float | None = None             # gaussian: fixed std of p(x|z), or None to learn it

    def __post_init__(self):
        self.x_shape = tuple(self.x_shape)
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.arch == "conv" and self.x_shape != (1, 28, 28):
            raise ValueError(f"the conv VAE is built for 1 x 28 x 28 images, got x_shape={self.x_shape}; "
                             "use arch='mlp' for other shapes")
        for name in ("z_dim", "hidden", "channels", "n_layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.sigma_x is not None and not self.sigma_x > 0:
            raise ValueError(f"sigma_x must be > 0 (or None to learn it), got {self.sigma_x!r}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0 (1 gives the ELBO), got {self.beta!r}")

    @property
    def x_dim(self) -> int:
        return math.prod(self.x_shape)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x -> (mu, logvar): a ReLU MLP with a 2 * z_dim output."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.net = _mlp([config.x_dim] + [config.hidden] * config.n_layers + [2 * config.z_dim])

    def forward(self, x):
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=-1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """z -> the parameters of p(x|z) (Bernoulli logits or Gaussian means), shaped like x."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.x_shape = config.x_shape
        self.net = _mlp([config.z_dim] + [config.hidden] * config.n_layers + [config.x_dim])

    def forward(self, z):
        return self.net(z).view(-1, *self.x_shape)


class ConvEncoder(nn.Module):
    """28 x 28 -> 14 x 14 -> 7 x 7 with stride-2 convolutions, then a linear map to (mu, logvar)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c = config.channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, 2 * config.z_dim),
        )

    def forward(self, x):
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """The encoder mirrored: linear to 7 x 7, then two stride-2 transposed convolutions to 28 x 28."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c = config.channels
        self.net = nn.Sequential(
            nn.Linear(config.z_dim, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, 2 * c * 7 * 7), nn.ReLU(), nn.Unflatten(1, (2 * c, 7, 7)),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1),
        )

    def forward(self, z):
        return self.net(z)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) and sigma = exp(logvar / 2).

    The randomness sits in eps, which does not depend on the parameters, so z is a differentiable
    function of (mu, logvar) and gradients flow through the sample.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if eps is None:  # a CPU generator draws on the CPU, then moves: same numbers on every device
        eps = torch.randn(mu.shape, generator=generator).to(mu) if generator is not None else torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2), per row."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor | float = 0.0,
                         logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """log N(z; mu, diag e^logvar), summed over the last dimension."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


class VAE(nn.Module):
    """Encoder q(z|x) = N(mu(x), diag sigma^2(x)), prior N(0, I), decoder p(x|z)."""

    def __init__(self, config: VAEConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config if config is not None else VAEConfig(**kwargs)
        enc, dec = (MLPEncoder, MLPDecoder) if config.arch == "mlp" else (ConvEncoder, ConvDecoder)
        self.encoder, self.decoder = enc(config), dec(config)
        # Gaussian p(x|z) = N(decoder(z), diag sigma_x^2): sigma_x fixed, or learned per coordinate
        if config.likelihood == "gaussian" and config.sigma_x is None:
            self.logvar_x = nn.Parameter(torch.zeros(config.x_shape))
        elif config.likelihood == "gaussian":
            self.register_buffer("logvar_x", torch.full(config.x_shape, 2 * math.log(config.sigma_x)))
        else:
            self.logvar_x = None

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 1 + len(self.config.x_shape) \
                or tuple(x.shape[1:]) != self.config.x_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected a batch of shape N x {' x '.join(map(str, self.config.x_shape))}, "
                             f"got {shape}; reshape it (e.g. x.view(-1, {', '.join(map(str, self.config.x_shape))}))")
        if self.config.likelihood == "bernoulli" and x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"a Bernoulli likelihood needs pixels in [0, 1], got values in "
                             f"[{x.min().item():.3g}, {x.max().item():.3g}]; divide by 255 first")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parameters (mu, logvar) of q(z|x), each N x z_dim."""
        self.check_input(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The parameters of p(x|z): Bernoulli logits or Gaussian means, shaped N x x_shape."""
        if z.dim() != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must have shape N x {self.config.z_dim}, got {tuple(z.shape)}")
        return self.decoder(z)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: pixel probabilities (Bernoulli) or the Gaussian mean."""
        out = self.decode(z)
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def log_px_given_z(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels/coordinates, one value per example (nats).

        Bernoulli: sum_i x_i log p_i + (1 - x_i) log(1 - p_i), p = sigmoid(logits).
        Gaussian:  log N(x; out, diag sigma_x^2).
        """
        x = x.expand_as(out)
        if self.config.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(-1)
        return gaussian_log_density(x.flatten(1), out.flatten(1), self.logvar_x.flatten())

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Encode, sample z by the reparameterization trick, decode: (out, mu, logvar, z)."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode(z), mu, logvar, z

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n draws from the model: z ~ N(0, I), then x ~ p(x|z), or E[x|z] when ``mean`` is True.

        Generation is random twice over: in z, and (with ``mean=False``) in x given z.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        device = model_device(self)
        z = torch.randn(n, self.config.z_dim, generator=generator).to(device)
        x_mean = self.mean(z)
        if mean:
            return x_mean
        if self.config.likelihood == "bernoulli":
            return torch.bernoulli(x_mean.cpu(), generator=generator).to(device)
        noise = torch.randn(x_mean.shape, generator=generator).to(device)
        return x_mean + torch.exp(0.5 * self.logvar_x) * noise


@dataclass
class ELBOTerms:
    """Per-example terms of the negative ELBO: ``rec`` = -log p(x|z) (distortion), ``kl`` (rate)."""
    loss: torch.Tensor   # scalar: mean over the batch of rec + beta * kl
    rec: torch.Tensor    # N
    kl: torch.Tensor     # N

    @property
    def neg_elbo(self) -> torch.Tensor:
        """-ELBO per example (beta = 1), in nats."""
        return self.rec + self.kl


def negative_elbo(model: VAE, x: torch.Tensor, beta: float | None = None,
                  generator: torch.Generator | None = None) -> ELBOTerms:
    """-ELBO = E_q[-log p(x|z)] + beta * KL(q(z|x) || p(z)), one z sample per x, closed-form KL.

    ``beta`` defaults to the model's ``config.beta``; beta = 1 gives the true negative ELBO.
    """
    beta = model.config.beta if beta is None else beta
    out, mu, logvar, _ = model(x, generator=generator)
    rec = -model.log_px_given_z(x, out)
    kl = gaussian_kl(mu, logvar)
    return ELBOTerms(loss=(rec + beta * kl).mean(), rec=rec, kl=kl)


def log_weights(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k x N importance log-weights  log w = log p(x|z) + log p(z) - log q(z|x),  z ~ q(z|x)."""
    mu, logvar = model.encode(x)
    eps = torch.randn((k, *mu.shape), generator=generator).to(mu.device)
    z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *mu.shape), eps=eps)  # k x N x z_dim
    out = model.decode(z.flatten(0, 1)).view(k, len(x), *model.config.x_shape)
    log_px_z = model.log_px_given_z(x.unsqueeze(0).expand_as(out).flatten(0, 1), out.flatten(0, 1)).view(k, -1)
    return log_px_z + gaussian_log_density(z) - gaussian_log_density(z, mu, logvar)


@torch.no_grad()
def iwae_bound(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
               chunk: int = 100) -> torch.Tensor:
    """The importance-weighted bound  L_k(x) = E[log (1/k) sum_i w_i] <= log p(x), per example.

    k = 1 is the ELBO; L_k grows with k and tends to log p(x) (Burda et al. 2016). The k samples
    are drawn ``chunk`` at a time and combined exactly with logsumexp, so memory stays bounded.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (the number of importance samples), got {k!r}")
    model.check_input(x)
    chunks = [log_weights(model, x, min(chunk, k - i), generator) for i in range(0, k, chunk)]
    bound = torch.logsumexp(torch.cat(chunks), dim=0) - math.log(k)
    return bound


def mu_gradient_samples(model: VAE, x: torch.Tensor, n: int, estimator: str,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """n single-sample estimates of d/d mu E_{q(z|x)}[log p(x|z)], shape n x N x z_dim.

    * ``reparam``: d/d mu log p(x | mu + sigma eps)  (pathwise, through the decoder);
    * ``score``:   log p(x|z) * d/d mu log q(z|x) = log p(x|z) (z - mu) / sigma^2  (REINFORCE);
    * ``score_baseline``: the score estimator with a leave-one-out baseline: sample i subtracts
      b_i = mean of log p(x|z_j) over the other n - 1 samples (a control variate). b_i does not
      depend on z_i, so E[b_i d/d mu log q(z_i|x)] = 0 and the estimate stays exactly unbiased; a
      baseline that included sample i itself would be biased by O(1/n).
    All three are unbiased for the same gradient; their variances differ by orders of magnitude.
    """
    if estimator == "score_baseline" and n < 2:
        raise ValueError(f"the leave-one-out baseline needs n >= 2 samples, got n={n}")
    mu, logvar = (t.detach() for t in model.encode(x))
    eps = torch.randn((n, *mu.shape), generator=generator).to(mu.device)
    sigma = torch.exp(0.5 * logvar)
    x_rep = x.unsqueeze(0).expand(n, *x.shape).flatten(0, 1)
    if estimator == "reparam":
        mu_rep = mu.expand(n, *mu.shape).clone().requires_grad_(True)
        z = mu_rep + sigma * eps
        log_px_z = model.log_px_given_z(x_rep, model.decode(z.flatten(0, 1)))
        return torch.autograd.grad(log_px_z.sum(), mu_rep)[0]
    if estimator in ("score", "score_baseline"):
        z = mu + sigma * eps
        with torch.no_grad():
            f = model.log_px_given_z(x_rep, model.decode(z.flatten(0, 1))).view(n, len(x), 1)
        if estimator == "score_baseline":
            f = f - (f.sum(0, keepdim=True) - f) / (n - 1)  # f_i - mean of the others
        return f * eps / sigma  # (z - mu) / sigma^2 = eps / sigma
    raise ValueError(f"estimator must be 'reparam', 'score' or 'score_baseline', got {estimator!r}")
