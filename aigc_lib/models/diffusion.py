"""Denoising diffusion: the noise schedule, the forward process, the epsilon loss and the samplers.

The forward process adds Gaussian noise in T small steps, q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
beta_t I), and has the closed form (Ho et al., 2020, eq. 4)

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),   alpha_bar_t = prod_{s<=t} (1 - beta_s).

A network eps_theta(x_t, t, y) learns to predict the noise; :func:`ddpm_step` (ancestral sampling)
and :func:`ddim_step` (Song et al., 2021) turn its prediction into a step from x_t to an earlier x.
Time steps are indexed 0 .. T-1 as in ``diffusers``, so ``alpha_bar[0] = 1 - beta_0`` and the
schedules, :meth:`NoiseSchedule.add_noise` and both steps equal ``diffusers``'
``DDPMScheduler`` / ``DDIMScheduler`` (tested in ``tests/test_diffusion.py``).

:class:`Diffusion` wraps a denoiser (the U-Net of :mod:`aigc_lib.models.unet`, or the MLP
:class:`MLPDenoiser` for 2-D points and VAE latents) with a schedule: ``loss`` and ``sample``;
:class:`LatentDiffusion` runs one in the latent space of a VAE (Rombach et al., 2022).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads, model_device

SCHEDULES = ("linear", "squaredcos_cap_v2")


# ----------------------------------------------------------------------------- the noise schedule
def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_t evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al., 2020: 1e-4 to 0.02, T = 1000)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the cosine schedule (Nichol & Dhariwal, 2021): alpha_bar(u) = f(u) / f(0) with
    f(u) = cos^2((u + s)/(1 + s) * pi/2), so that alpha_bar(0) = 1 (f(0) is just below 1).

    beta_t = min(1 - f((t+1)/T) / f(t/T), max_beta), the same ratio of alpha_bars (f(0) cancels); the
    cap stops the last betas reaching 1 (diffusers calls this schedule ``"squaredcos_cap_v2"``).
    """
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor([min(1 - f((t + 1) / T) / f(t / T), max_beta) for t in range(T)], dtype=torch.float32)


class NoiseSchedule:
    """beta_t, alpha_t = 1 - beta_t and alpha_bar_t = prod_{s<=t} alpha_s for t = 0 .. T-1."""

    def __init__(self, T: int = 1000, kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02):
        if not isinstance(T, int) or T < 2:
            raise ValueError(f"T (the number of diffusion steps) must be an int >= 2, got {T!r}")
        if kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
        if kind == "linear" and not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        self.T, self.kind = T, kind
        self.betas = linear_betas(T, beta_start, beta_end) if kind == "linear" else cosine_betas(T)
        self.alphas = 1.0 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) of x_t, per step."""
        return self.alpha_bar / (1 - self.alpha_bar)

    def _check_t(self, t: torch.Tensor, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"t must be one step or one step per example ({n}), got shape {tuple(t.shape)}")
        if t.min() < 0 or t.max() >= self.T:
            raise ValueError(f"time steps must lie in 0 .. {self.T - 1}, got {t.min().item()} .. {t.max().item()}")
        return t

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps: a draw from q(x_t | x_0) in one go."""
        if eps.shape != x0.shape:
            raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
        t = self._check_t(t, len(x0))
        ab = self.alpha_bar.to(x0.device)[t.to(x0.device)].view(-1, *[1] * (x0.dim() - 1))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def forward_chain(self, x0: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t by t + 1 single steps x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) eps_s, s = 0 .. t.

        The slow way; :meth:`add_noise` is the closed form of the same distribution.
        """
        if not 0 <= t < self.T:
            raise ValueError(f"t must lie in 0 .. {self.T - 1}, got {t}")
        x = x0
        for s in range(t + 1):
            eps = torch.randn(x.shape, generator=generator).to(x.device)
            x = self.alphas[s].sqrt() * x + self.betas[s].sqrt() * eps
        return x


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """The ``steps`` time steps a DDIM (or short DDPM) sampler visits, largest first.

    Evenly spaced with ratio T // steps and starting at 0 ("leading" spacing, diffusers' default):
    T = 1000, steps = 50 gives 980, 960, ..., 20, 0.
    """
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in 1 .. T = {T}, got {steps!r}")
    ratio = T // steps
    return [i * ratio for i in range(steps)][::-1]


def predict_x0(schedule: NoiseSchedule, xt: torch.Tensor, eps_hat: torch.Tensor, t: int) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t): the forward map inverted."""
    ab = schedule.alpha_bar[t]
    return (xt - (1 - ab) ** 0.5 * eps_hat) / ab ** 0.5


def _noise_like(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is not None:
        if noise.shape != x.shape:
            raise ValueError(f"noise must have the sample's shape {tuple(x.shape)}, got {tuple(noise.shape)}")
        return noise
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def ddpm_step(schedule: NoiseSchedule, eps_hat: torch.Tensor, t: int, xt: torch.Tensor, prev_t: int | None = None,
              clip: float | None = 1.0, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One ancestral step x_t -> x_{prev_t} ~ q(x_prev | x_t, x0_hat) (Ho et al., 2020, eqs. 6-7).

    mean = sqrt(alpha_bar_prev) beta'_t / (1 - alpha_bar_t) x0_hat
           + sqrt(alpha'_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t,
    var  = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta'_t     (the "fixed small" variance, beta-tilde),
    with alpha'_t = alpha_bar_t / alpha_bar_prev, beta'_t = 1 - alpha'_t (= beta_t when prev_t = t - 1).
    ``clip`` clamps x0_hat to [-clip, clip] (images in [-1, 1]; None for unbounded data). No noise
    is added at t = 0. Equals ``diffusers.DDPMScheduler.step`` (variance_type "fixed_small").
    """
    prev_t = t - 1 if prev_t is None else prev_t
    if not 0 <= t < schedule.T or prev_t >= t:
        raise ValueError(f"need 0 <= t < T = {schedule.T} and prev_t < t, got t = {t}, prev_t = {prev_t}")
    ab_t = schedule.alpha_bar[t]
    ab_prev = schedule.alpha_bar[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    alpha_t = ab_t / ab_prev
    beta_t = 1 - alpha_t
    x0_hat = predict_x0(schedule, xt, eps_hat, t)
    if clip is not None:
        x0_hat = x0_hat.clamp(-clip, clip)
    mean = (ab_prev ** 0.5 * beta_t) / (1 - ab_t) * x0_hat + alpha_t ** 0.5 * (1 - ab_prev) / (1 - ab_t) * xt
    if t == 0:
        return mean
    var = torch.clamp((1 - ab_prev) / (1 - ab_t) * beta_t, min=1e-20)
    return mean + var ** 0.5 * _noise_like(xt, noise, generator)


def ddim_step(schedule: NoiseSchedule, eps_hat: torch.Tensor, t: int, prev_t: int, xt: torch.Tensor,
              eta: float = 0.0, clip: float | None = 1.0, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDIM step x_t -> x_{prev_t} (Song et al., 2021, eq. 12):

    x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z,
    sigma  = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev).

    eta = 0 is deterministic; eta = 1 has DDPM's variance. ``prev_t < 0`` means "to the data"
    (alpha_bar_prev = 1). Equals ``diffusers.DDIMScheduler.step`` (set_alpha_to_one=True).
    """
    if not 0 <= t < schedule.T or prev_t >= t:
        raise ValueError(f"need 0 <= t < T = {schedule.T} and prev_t < t, got t = {t}, prev_t = {prev_t}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta}")
    ab_t = schedule.alpha_bar[t]
    ab_prev = schedule.alpha_bar[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    x0_hat = predict_x0(schedule, xt, eps_hat, t)
    if clip is not None:
        x0_hat = x0_hat.clamp(-clip, clip)
    var = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
    sigma = eta * var ** 0.5
    x_prev = ab_prev ** 0.5 * x0_hat + (1 - ab_prev - sigma ** 2) ** 0.5 * eps_hat
    if eta > 0:
        x_prev = x_prev + sigma * _noise_like(xt, noise, generator)
    return x_prev


# ----------------------------------------------------------------------------- time embedding, MLP denoiser
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of the step t (as the Transformer's positions): [cos(t w_i), sin(t w_i)]."""
    if dim % 2:
        raise ValueError(f"the time embedding size must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def net_data_shape(net: nn.Module) -> tuple[int, ...]:
    """The shape of one sample a denoiser maps: (dim,) for the MLP, (channels, size, size) for the U-Net."""
    config = net.config
    return (config.dim,) if hasattr(config, "dim") else (config.in_channels, config.size, config.size)


@dataclass
class MLPDenoiserConfig:
    dim: int = 2            # size of one data point (2 for the ring, 20 for VAE latents)
    hidden: int = 128
    n_layers: int = 3       # residual MLP blocks
    time_dim: int = 64
    n_classes: int = 0      # > 0: class-conditional, with an extra "no label" class for guidance


class MLPDenoiser(nn.Module):
    """eps_theta(x_t, t, y) for vectors: a residual MLP with the time (and class) embedding added."""

    def __init__(self, config: MLPDenoiserConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config if config is not None else MLPDenoiserConfig(**kwargs)
        if config.dim < 1 or config.hidden < 1 or config.n_layers < 1 or config.n_classes < 0:
            raise ValueError(f"need dim, hidden, n_layers >= 1 and n_classes >= 0, got {config}")
        self.n_classes = config.n_classes
        self.inp = nn.Linear(config.dim, config.hidden)
        self.time = nn.Sequential(nn.Linear(config.time_dim, config.hidden), nn.SiLU(), nn.Linear(config.hidden, config.hidden))
        self.label = nn.Embedding(config.n_classes + 1, config.hidden) if config.n_classes else None
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(config.hidden), nn.SiLU(), nn.Linear(config.hidden, config.hidden),
                                                  nn.SiLU(), nn.Linear(config.hidden, config.hidden))
                                    for _ in range(config.n_layers))
        self.out = nn.Sequential(nn.LayerNorm(config.hidden), nn.SiLU(), nn.Linear(config.hidden, config.dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x must have shape N x {self.config.dim}, got {tuple(x.shape)}")
        emb = self.time(timestep_embedding(t, self.config.time_dim))
        if self.label is not None:
            emb = emb + self.label(null_labels(y, len(x), self.n_classes, x.device))
        h = self.inp(x) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


def null_labels(y: torch.Tensor | None, n: int, n_classes: int, device) -> torch.Tensor:
    """Labels for a conditional denoiser: ``y`` checked, or the "no label" class ``n_classes`` if None."""
    if y is None:
        return torch.full((n,), n_classes, dtype=torch.long, device=device)
    y = torch.as_tensor(y, dtype=torch.long, device=device)
    if y.shape != (n,) or y.min() < 0 or y.max() > n_classes:
        raise ValueError(f"y must be {n} labels in 0 .. {n_classes - 1} ({n_classes} = no label), "
                         f"got shape {tuple(y.shape)}")
    return y


# ----------------------------------------------------------------------------- the model: denoiser + schedule
class Diffusion(nn.Module):
    """A denoiser eps_theta and its noise schedule: the training loss and the samplers.

    ``net(x_t, t, y)`` predicts the noise in x_t. Data live in the network's space (images in
    [-1, 1], 2-D points or standardized latents); ``clip`` is the range x0_hat is clamped to while
    sampling (1.0 for images, None for unbounded data).
    """

    def __init__(self, net: nn.Module, T: int = 1000, schedule: str = "linear", clip: float | None = 1.0):
        super().__init__()
        self.net, self.clip = net, clip
        self.schedule = NoiseSchedule(T, schedule)
        self.n_classes = getattr(net, "n_classes", 0)

    @property
    def T(self) -> int:
        return self.schedule.T

    def loss(self, x0: torch.Tensor, y: torch.Tensor | None = None, p_uncond: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple = E_{t, eps} || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t, y) ||^2.

        t ~ Uniform{0 .. T-1}. With ``p_uncond > 0`` each label is replaced by "no label" with that
        probability, so one network learns the conditional and the unconditional model
        (classifier-free guidance). Mean over examples and coordinates.
        """
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        if (y is not None) and not self.n_classes:
            raise ValueError("labels were given but the denoiser is unconditional (n_classes = 0)")
        n, device = len(x0), x0.device
        t = torch.randint(self.T, (n,), generator=generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        xt = self.schedule.add_noise(x0, eps, t)
        if y is not None and p_uncond > 0:
            drop = (torch.rand(n, generator=generator) < p_uncond).to(device)
            y = torch.where(drop, torch.full_like(y, self.n_classes), y)
        return F.mse_loss(self.net(xt, t, y), eps)

    def eps(self, xt: torch.Tensor, t: int, y: torch.Tensor | None = None, guidance: float = 1.0) -> torch.Tensor:
        """eps_theta(x_t, t, y), guided: eps_u + w (eps_c - eps_u) (Ho & Salimans, 2022).

        w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 pushes samples
        towards what the label makes likely (diffusers' ``guidance_scale`` convention).
        """
        tt = torch.full((len(xt),), t, dtype=torch.long, device=xt.device)
        if y is None or guidance == 1.0:
            return self.net(xt, tt, y)
        both = self.net(torch.cat([xt, xt]), torch.cat([tt, tt]),
                        torch.cat([y, torch.full_like(y, self.n_classes)]))
        eps_c, eps_u = both.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, sampler: str = "ddim", eta: float = 0.0,
               y: torch.Tensor | int | None = None, guidance: float = 1.0, generator: torch.Generator | None = None,
               shape: tuple[int, ...] | None = None, batch_size: int = 500, trajectory: bool = False,
               progress: bool = False):
        """Draw ``n`` samples by ``steps`` reverse steps, from x_T ~ N(0, I) to x_0.

        ``sampler="ddpm"`` with ``steps=None`` is the ancestral sampler over all T steps;
        ``"ddim"`` (or ``"ddpm"`` with ``steps < T``) visits :func:`ddim_timesteps`. ``y``: one label
        per sample or one int (conditional models); ``guidance``: see :meth:`eps`. With
        ``trajectory=True`` also returns the list of intermediate x (first batch only).
        """
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if y is not None and not self.n_classes:
            raise ValueError("labels were given but the model is unconditional (n_classes = 0)")
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        if y is not None and len(y) != n:
            raise ValueError(f"give one label per sample ({n}), got {len(y)}")
        steps = self.T if steps is None else steps
        ts = ddim_timesteps(self.T, steps)
        shape = tuple(shape) if shape is not None else self.data_shape()
        device = model_device(self)
        out, traj = [], []
        bar = tqdm(total=-(-n // batch_size) * steps, desc=f"{sampler} {steps} steps", disable=not progress, leave=False)
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            yb = None if y is None else torch.as_tensor(y[start:start + m]).to(device)
            x = torch.randn((m, *shape), generator=generator).to(device)
            if trajectory and start == 0:
                traj.append(x.cpu())
            for i, t in enumerate(ts):
                fit_threads()
                prev_t = ts[i + 1] if i + 1 < len(ts) else -1
                eps_hat = self.eps(x, t, yb, guidance)
                if sampler == "ddpm":
                    noise = torch.randn(x.shape, generator=generator).to(device)
                    x = ddpm_step(self.schedule, eps_hat, t, x, prev_t, self.clip, noise=noise)
                else:
                    noise = torch.randn(x.shape, generator=generator).to(device) if eta > 0 else None
                    x = ddim_step(self.schedule, eps_hat, t, prev_t, x, eta, self.clip, noise=noise)
                if trajectory and start == 0:
                    traj.append(x.cpu())
                bar.update()
            out.append(x.cpu())
        bar.close()
        x = torch.cat(out)
        return (x, traj) if trajectory else x

    def data_shape(self) -> tuple[int, ...]:
        return net_data_shape(self.net)


class LatentDiffusion(nn.Module):
    """Diffusion in the latent space of a frozen VAE: z ~ the diffusion model, then x = E[x | z].

    Latents are the encoder means of the training digits, standardized per dimension
    (``z_mean``, ``z_std``), so the diffusion model sees data of unit scale.
    """

    def __init__(self, diffusion: Diffusion, z_dim: int):
        super().__init__()
        self.diffusion = diffusion
        self.register_buffer("z_mean", torch.zeros(z_dim))
        self.register_buffer("z_std", torch.ones(z_dim))

    @torch.no_grad()
    def sample_latents(self, n: int, **kwargs) -> torch.Tensor:
        """n latents z (in the VAE's scale), by :meth:`Diffusion.sample` (same keyword arguments)."""
        return self.diffusion.sample(n, **kwargs) * self.z_std.cpu() + self.z_mean.cpu()

    @torch.no_grad()
    def sample(self, vae, n: int, **kwargs) -> torch.Tensor:
        """n images in [0, 1]: latents from the diffusion model, decoded to E[x | z] by ``vae``."""
        return vae.mean(self.sample_latents(n, **kwargs).to(model_device(vae))).cpu()
