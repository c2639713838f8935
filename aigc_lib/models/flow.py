"""Flow matching: the linear path, the velocity target, ODE and SDE samplers, and DDIM as an ODE step.

The linear (rectified-flow) path joins a data point x_0 to a noise draw eps ~ N(0, I),

    x_t = (1 - t) x_0 + t eps,        t in [0, 1]   (t = 0: data, t = 1: noise),

as in Stable Diffusion 3 and ``diffusers``' ``FlowMatchEulerDiscreteScheduler`` (whose sigma is
our t). Along one path x_t moves with the constant *conditional velocity* dx_t/dt = eps - x_0. A
network v_theta(x_t, t) regressed onto it (the flow-matching loss, Lipman et al., 2023; Liu et
al., 2023) learns the conditional mean E[eps - x_0 | x_t], the *marginal velocity* u_t(x), and the
ODE dx/dt = u_t(x) carries N(0, I) at t = 1 to the data at t = 0. :func:`mixture_velocity` gives
u_t in closed form for a Gaussian mixture, the check that regression finds it.

Samplers (all step from t to an earlier t' < t, and each takes a velocity function
``velocity(x, t) -> v``, so the same code runs a network, a closed form or a toy ODE):

- :func:`euler_step`: x' = x + (t' - t) v(x, t), one network pass (``diffusers``' step);
- :func:`heun_step`: Euler, then the average of the slopes at both ends (two passes, error O(h^2));
- :func:`stochastic_step`: DDIM's eta-step written for the linear path: predict x0 and eps from
  v, move to t' and replace a share of the noise with fresh noise (eta = 0 is Euler exactly).

:func:`vp_to_flow` maps a DDPM state (x_t, alpha_bar_t) to the linear path's (x, t), where a
DDIM step with eta = 0 is exactly an Euler step (Song et al., 2021's probability-flow ODE,
discretized); :func:`sample_diffusion` samples a DDPM model on any list of time steps, with the
"trailing" spacing of Lin et al. (2024) from :func:`diffusion_timesteps`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import fit_threads, model_device
from aigc_lib.models.diffusion import NoiseSchedule, ddim_step, ddim_timesteps, ddpm_step, net_data_shape

SAMPLERS = ("euler", "heun", "stochastic")
T_SCALE = 1000.0  # the networks read t in [0, 1] as 1000 t, the range their time embedding was made for

Velocity = Callable[[torch.Tensor, float], torch.Tensor]


# ----------------------------------------------------------------------------- the path and its target
def _check_t(t, what: str = "t") -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32)
    if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise ValueError(f"{what} must lie in [0, 1] (0 = data, 1 = noise), got "
                         f"{t.min().item():.4g} .. {t.max().item():.4g}")
    return t


def _expand(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t as a scalar or one value per example, shaped to broadcast over x."""
    t = t.to(x.device, x.dtype)
    if t.dim() == 0:
        return t
    if t.shape != (len(x),):
        raise ValueError(f"t must be one number or one per example ({len(x)}), got shape {tuple(t.shape)}")
    return t.view(-1, *[1] * (x.dim() - 1))


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps: the straight line from the data point to the noise."""
    if eps.shape != x0.shape:
        raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
    t = _expand(_check_t(t), x0)
    return (1 - t) * x0 + t * eps


def target_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The conditional velocity d x_t / dt = eps - x_0 (the same at every t of one path)."""
    if eps.shape != x0.shape:
        raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
    return eps - x0


def predict_x0_eps(xt: torch.Tensor, v: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    """The path's end points implied by a velocity: x0 = x_t - t v, eps = x_t + (1 - t) v."""
    if v.shape != xt.shape:
        raise ValueError(f"v must have x_t's shape {tuple(xt.shape)}, got {tuple(v.shape)}")
    t = _expand(_check_t(t), xt)
    return xt - t * v, xt + (1 - t) * v


def mixture_velocity(x: torch.Tensor, t: float, means: torch.Tensor, stds: torch.Tensor,
                     weights: torch.Tensor | None = None) -> torch.Tensor:
    """The marginal velocity u_t(x) = E[eps - x_0 | x_t = x] when x_0 ~ sum_k w_k N(mu_k, s_k^2 I).

    Given component k, x_t ~ N((1 - t) mu_k, v_k I) with v_k = (1 - t)^2 s_k^2 + t^2, and
    E[eps | x_t, k] = t (x - (1 - t) mu_k) / v_k, E[x_0 | x_t, k] = mu_k + (1 - t) s_k^2 (x - (1 - t) mu_k) / v_k.
    u_t is their difference averaged with the posterior weights p(k | x_t = x).
    """
    if x.dim() != 2 or means.dim() != 2 or means.shape[1] != x.shape[1]:
        raise ValueError(f"x must be N x d and means K x d with the same d, got {tuple(x.shape)}, {tuple(means.shape)}")
    stds = torch.as_tensor(stds, dtype=x.dtype).expand(len(means))
    weights = torch.full((len(means),), 1 / len(means)) if weights is None else torch.as_tensor(weights, dtype=x.dtype)
    t = float(_check_t(t))
    d = x.shape[1]
    var = (1 - t) ** 2 * stds ** 2 + t ** 2                      # K
    r = x[:, None, :] - (1 - t) * means[None]                    # N x K x d
    logp = weights.log() - 0.5 * (r ** 2).sum(-1) / var - 0.5 * d * var.log()
    post = torch.softmax(logp, dim=1)                            # N x K
    eps = t * r / var[None, :, None]
    x0 = means[None] + (1 - t) * stds[None, :, None] ** 2 * r / var[None, :, None]
    return (post[..., None] * (eps - x0)).sum(1)


# ----------------------------------------------------------------------------- time grids and solver steps
def flow_times(steps: int, shift: float = 1.0) -> torch.Tensor:
    """steps + 1 times from 1 (noise) to 0 (data), evenly spaced, optionally shifted towards noise.

    ``shift`` s maps t -> s t / (1 + (s - 1) t) (Stable Diffusion 3's time shift; 1 leaves t alone).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def _check_pair(t: float, t_next: float) -> None:
    _check_t(t), _check_t(t_next, "t_next")
    if not t_next < t:
        raise ValueError(f"a sampler step goes from t to an earlier t_next < t, got t = {t}, t_next = {t_next}")


def euler_step(v: torch.Tensor, t: float, t_next: float, x: torch.Tensor) -> torch.Tensor:
    """x_{t'} = x_t + (t' - t) v: one Euler step of dx/dt = v (``FlowMatchEulerDiscreteScheduler.step``)."""
    _check_pair(float(t), float(t_next))
    if v.shape != x.shape:
        raise ValueError(f"the velocity must have the sample's shape {tuple(x.shape)}, got {tuple(v.shape)}")
    return x + (float(t_next) - float(t)) * v


def heun_step(velocity: Velocity, t: float, t_next: float, x: torch.Tensor,
              v: torch.Tensor | None = None) -> torch.Tensor:
    """One Heun step (two passes): x~ = x + h v(x, t); x' = x + h (v(x, t) + v(x~, t')) / 2, h = t' - t.

    The trapezoidal average cancels Euler's first-order error: the global error falls as h^2.
    ``v``: v(x, t) if already computed.
    """
    v = velocity(x, t) if v is None else v
    x_euler = euler_step(v, t, t_next, x)
    return x + (float(t_next) - float(t)) * 0.5 * (v + velocity(x_euler, t_next))


def stochastic_step(v: torch.Tensor, t: float, t_next: float, x: torch.Tensor, eta: float = 1.0,
                    noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM's step on the linear path: x' = (1 - t') x0 + sqrt(t'^2 - sigma^2) eps + sigma z.

    x0, eps come from :func:`predict_x0_eps`; sigma = eta t' sqrt(1 - SNR_t / SNR_t'), SNR_t =
    (1 - t)^2 / t^2, which is DDPM's posterior variance for ``eta = 1`` (the same formula as
    DDIM's, with sqrt(alpha_bar) = 1 - t and sqrt(1 - alpha_bar) = t). ``eta = 0``: Euler.
    """
    _check_pair(float(t), float(t_next))
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: the ODE's Euler step, 1: DDPM-like noise), got {eta}")
    t, t_next = float(t), float(t_next)
    x0, eps = predict_x0_eps(x, v, t)
    snr = lambda s: (1 - s) ** 2 / s ** 2 if s > 0 else math.inf  # noqa: E731
    ratio = snr(t) / snr(t_next) if t_next > 0 else 1.0
    sigma = eta * t_next * math.sqrt(max(1 - ratio, 0.0))
    out = (1 - t_next) * x0 + math.sqrt(max(t_next ** 2 - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        elif noise.shape != x.shape:
            raise ValueError(f"noise must have the sample's shape {tuple(x.shape)}, got {tuple(noise.shape)}")
        out = out + sigma * noise
    return out


def passes_per_step(sampler: str) -> int:
    """Network passes one step of ``sampler`` costs (Heun evaluates the velocity twice)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return 2 if sampler == "heun" else 1


def solve(velocity: Velocity, x1: torch.Tensor, steps: int, sampler: str = "euler", eta: float = 1.0,
          times: torch.Tensor | None = None, generator: torch.Generator | None = None,
          trajectory: bool = False):
    """Integrate from t = 1 (``x1``, noise) to t = 0 by ``steps`` steps of ``sampler``.

    ``times`` (steps + 1 values from 1 down to 0) replaces the even grid of :func:`flow_times`.
    Returns x_0, and with ``trajectory=True`` also the list of states (x1 first).
    """
    passes_per_step(sampler)
    times = flow_times(steps) if times is None else torch.as_tensor(times, dtype=torch.float32)
    if times.shape != (steps + 1,):
        raise ValueError(f"give steps + 1 = {steps + 1} times, got shape {tuple(times.shape)}")
    x, path = x1, [x1]
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        fit_threads()
        if sampler == "heun":
            x = heun_step(velocity, t, t_next, x)
        elif sampler == "euler":
            x = euler_step(velocity(x, t), t, t_next, x)
        else:
            x = stochastic_step(velocity(x, t), t, t_next, x, eta, generator=generator)
        if trajectory:
            path.append(x)
    return (x, path) if trajectory else x


# ----------------------------------------------------------------------------- the model
class FlowMatching(nn.Module):
    """A network v_theta(x_t, t, y) trained to predict the velocity eps - x_0 of the linear path.

    The network is any of the diffusion chapter's (the U-Net or the MLP denoiser): it reads
    ``1000 t`` as its time step. ``loss`` and ``n_classes`` are what
    :func:`~aigc_lib.training.diffusion.train_diffusion` uses, so the same loop (Adam, EMA)
    trains it with the flow-matching loss in place of the epsilon loss.
    """

    def __init__(self, net: nn.Module, t_exponent: float = 1.0):
        super().__init__()
        if not t_exponent > 0:
            raise ValueError(f"t_exponent must be > 0 (1: t uniform, 2: small t more often), got {t_exponent}")
        self.net = net
        self.n_classes = getattr(net, "n_classes", 0)
        self.t_exponent = t_exponent  # training draws t = u^t_exponent, u ~ U[0, 1]

    def _net(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.net(xt, T_SCALE * t.to(xt.device), y)

    def loss(self, x0: torch.Tensor, y: torch.Tensor | None = None, p_uncond: float = 0.0,
             generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """L_FM = E_{t, eps} || (eps - x0) - v_theta((1 - t) x0 + t eps, t, y) ||^2, t = u^t_exponent.

        With ``t_exponent = 1`` t is uniform on [0, 1]; with 2 its density is 1 / (2 sqrt(t)),
        which spends more of the training on the times near the data (u ~ U[0, 1] in both).

        ``p_uncond``: share of labels replaced by "no label" (classifier-free guidance), as in
        the diffusion chapter's loss. ``noise``: the eps paired with each x0 (reflow); drawn if None.
        """
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        if (y is not None) and not self.n_classes:
            raise ValueError("labels were given but the network is unconditional (n_classes = 0)")
        n, device = len(x0), x0.device
        t = (torch.rand(n, generator=generator) ** self.t_exponent).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device) if noise is None else noise
        xt = interpolate(x0, eps, t)
        if y is not None and p_uncond > 0:
            drop = (torch.rand(n, generator=generator) < p_uncond).to(device)
            y = torch.where(drop, torch.full_like(y, self.n_classes), y)
        return F.mse_loss(self._net(xt, t, y), target_velocity(x0, eps))

    def velocity(self, x: torch.Tensor, t: float, y: torch.Tensor | None = None,
                 guidance: float = 1.0) -> torch.Tensor:
        """v_theta(x, t, y), guided as in the diffusion chapter: v_u + w (v_c - v_u)."""
        tt = torch.full((len(x),), float(_check_t(t)), device=x.device)
        if y is None or guidance == 1.0:
            return self._net(x, tt, y)
        both = self._net(torch.cat([x, x]), torch.cat([tt, tt]),
                         torch.cat([y, torch.full_like(y, self.n_classes)]))
        v_c, v_u = both.chunk(2)
        return v_u + guidance * (v_c - v_u)

    @torch.no_grad()
    def sample(self, n: int, steps: int = 10, sampler: str = "euler", eta: float = 1.0,
               y: torch.Tensor | int | None = None, guidance: float = 1.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               shape: tuple[int, ...] | None = None, batch_size: int = 500, trajectory: bool = False,
               progress: bool = False):
        """``n`` samples from x_1 ~ N(0, I) (or the given ``noise``) by ``steps`` steps of ``sampler``.

        ``sampler``: "euler" (``steps`` passes), "heun" (2 ``steps`` passes) or "stochastic"
        (noise level ``eta``). ``y``, ``guidance``: as in the diffusion chapter's ``sample``.
        With ``trajectory=True`` also returns the states of the first batch.
        """
        passes_per_step(sampler)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if y is not None and not self.n_classes:
            raise ValueError("labels were given but the model is unconditional (n_classes = 0)")
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        if y is not None and len(y) != n:
            raise ValueError(f"give one label per sample ({n}), got {len(y)}")
        shape = tuple(shape) if shape is not None else self.data_shape()
        if noise is not None and tuple(noise.shape) != (n, *shape):
            raise ValueError(f"noise must have shape {(n, *shape)}, got {tuple(noise.shape)}")
        device, out, traj = model_device(self), [], []
        for start in tqdm(range(0, n, batch_size), disable=not progress, leave=False, desc=sampler):
            m = min(batch_size, n - start)
            yb = None if y is None else torch.as_tensor(y[start:start + m]).to(device)
            x1 = (torch.randn((m, *shape), generator=generator) if noise is None
                  else noise[start:start + m]).to(device)
            v = lambda x, t: self.velocity(x, t, yb, guidance)  # noqa: E731
            x, path = solve(v, x1, steps, sampler, eta, generator=generator, trajectory=True)
            out.append(x.cpu())
            if trajectory and start == 0:
                traj = [p.cpu() for p in path]
        x = torch.cat(out)
        return (x, traj) if trajectory else x

    def data_shape(self) -> tuple[int, ...]:
        return net_data_shape(self.net)


class PairedFlow(nn.Module):
    """Reflow's training view of a :class:`FlowMatching` model: each data row is a pair [x0, eps].

    Reflow (Liu et al., 2023) retrains on pairs (x0 = ODE(eps), eps) produced by the model itself,
    so the straight line between the two ends is a path the new flow can follow exactly. Packing a
    pair into one row lets :func:`~aigc_lib.training.diffusion.train_diffusion` draw batches of pairs.
    """

    def __init__(self, flow: FlowMatching):
        super().__init__()
        self.flow = flow
        self.n_classes = flow.n_classes

    def loss(self, pairs: torch.Tensor, y: torch.Tensor | None = None, p_uncond: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
        if pairs.dim() != 2 or pairs.shape[1] % 2:
            raise ValueError(f"pairs must be N x 2d rows [x0, eps], got shape {tuple(pairs.shape)}")
        x0, eps = pairs.chunk(2, dim=1)
        return self.flow.loss(x0, y, p_uncond, generator, noise=eps)


def straightness(path: list[torch.Tensor] | torch.Tensor) -> float:
    """How far the samples travel over how far they get: sum of polyline lengths / sum of end-to-end distances.

    ``path``: the states of N samples (a list, or a tensor steps x N x ...). 1 for straight paths
    travelled without detour; a ratio of sums, so a sample that ends near where it began does not
    dominate it as it would a mean of per-sample ratios.
    """
    path = torch.stack(list(path)) if not isinstance(path, torch.Tensor) else path
    if path.dim() < 3 or len(path) < 2:
        raise ValueError(f"give at least two states of N x d samples, got shape {tuple(path.shape)}")
    flat = path.flatten(2)
    length = (flat[1:] - flat[:-1]).norm(dim=-1).sum()
    return (length / (flat[-1] - flat[0]).norm(dim=-1).sum().clamp_min(1e-12)).item()


# ----------------------------------------------------------------------------- DDPM models as flows
def diffusion_timesteps(T: int, steps: int, spacing: str = "leading") -> list[int]:
    """The time steps a DDIM/DDPM sampler visits, largest first.

    "leading" (diffusers' default, :func:`~aigc_lib.models.diffusion.ddim_timesteps`): 0, T // steps, ...;
    "trailing" (Lin et al., 2024): round(arange(T, 0, -T / steps)) - 1, which starts at T - 1,
    the step where x_T really is pure noise (10 steps: 999, 899, ..., 99).
    """
    if spacing not in ("leading", "trailing"):
        raise ValueError(f"spacing must be 'leading' or 'trailing', got {spacing!r}")
    if spacing == "leading":
        return ddim_timesteps(T, steps)
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in 1 .. T = {T}, got {steps!r}")
    return [int(round(T - i * T / steps)) - 1 for i in range(steps)]


def vp_to_flow(x: torch.Tensor, alpha_bar) -> tuple[torch.Tensor, float]:
    """A DDPM state x_t = sqrt(ab) x0 + sqrt(1 - ab) eps as a point of the linear path: (x_t / (a + s), s / (a + s)).

    With a = sqrt(ab), s = sqrt(1 - ab): x_t / (a + s) = (1 - t) x0 + t eps for t = s / (a + s).
    """
    ab = float(alpha_bar)
    if not 0 <= ab <= 1:
        raise ValueError(f"alpha_bar must lie in [0, 1], got {ab}")
    a, s = math.sqrt(ab), math.sqrt(1 - ab)
    return x / (a + s), s / (a + s)


def eps_to_velocity(x_flow: torch.Tensor, t: float, eps_hat: torch.Tensor) -> torch.Tensor:
    """The velocity a noise prediction implies on the linear path: v = eps - x0, x0 = (x - t eps) / (1 - t)."""
    t = float(_check_t(t))
    if t >= 1:
        raise ValueError("at t = 1 the noise prediction says nothing about x0: use t < 1")
    return eps_hat - (x_flow - t * eps_hat) / (1 - t)


@torch.no_grad()
def sample_diffusion(model, n: int, timesteps: list[int], sampler: str = "ddim", eta: float = 0.0,
                     y: torch.Tensor | None = None, guidance: float = 1.0,
                     generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                     batch_size: int = 500, trajectory: bool = False):
    """The diffusion chapter's DDPM/DDIM sampling on any list of ``timesteps`` (largest first).

    ``model``: a :class:`~aigc_lib.models.diffusion.Diffusion`; ``sampler``: "ddpm" (ancestral)
    or "ddim" (``eta``). Used with "trailing" :func:`diffusion_timesteps`.
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    ts = list(timesteps)
    if not ts or any(b >= a for a, b in zip(ts, ts[1:])) or ts[0] >= model.T or ts[-1] < 0:
        raise ValueError(f"timesteps must be decreasing steps in 0 .. {model.T - 1}, got {ts}")
    shape, device = model.data_shape(), model_device(model)
    if noise is not None and tuple(noise.shape) != (n, *shape):
        raise ValueError(f"noise must have shape {(n, *shape)}, got {tuple(noise.shape)}")
    schedule: NoiseSchedule = model.schedule
    out, traj = [], []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        yb = None if y is None else torch.as_tensor(y[start:start + m]).to(device)
        x = (torch.randn((m, *shape), generator=generator) if noise is None else noise[start:start + m]).to(device)
        path = [x.cpu()]
        for i, t in enumerate(ts):
            fit_threads()
            prev_t = ts[i + 1] if i + 1 < len(ts) else -1
            eps_hat = model.eps(x, t, yb, guidance)
            if sampler == "ddpm":
                z = torch.randn(x.shape, generator=generator).to(device)
                x = ddpm_step(schedule, eps_hat, t, x, prev_t, model.clip, noise=z)
            else:
                z = torch.randn(x.shape, generator=generator).to(device) if eta > 0 else None
                x = ddim_step(schedule, eps_hat, t, prev_t, x, eta, model.clip, noise=z)
            path.append(x.cpu())
        out.append(x.cpu())
        if trajectory and start == 0:
            traj = path
    x = torch.cat(out)
    return (x, traj) if trajectory else x


@dataclass
class LinearODE:
    """dx/dt = lam x, solved exactly by x(t) = x(1) exp(lam (t - 1)): the solvers' order test."""

    lam: float = 1.0

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.lam * x

    def exact(self, x1: torch.Tensor, t: float) -> torch.Tensor:
        return x1 * math.exp(self.lam * (t - 1))
