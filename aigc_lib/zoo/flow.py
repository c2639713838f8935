"""The flow-matching chapter's models: the diffusion chapter's networks and budgets, trained with
the flow-matching loss, and one reflow of the ring model.

Each recipe copies its diffusion twin's settings (network, steps, batch, learning rate, EMA,
label dropout) through ``default_factory``, so "the same U-Net at the same budget" stays true
if the diffusion chapter's recipe changes. Training reuses
:func:`~aigc_lib.training.diffusion.train_diffusion`: a :class:`FlowMatching` model has the same
``loss(x0, y, p_uncond, generator)``, so only the loss differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aigc_lib.config import by_profile, device, generator, pinned_threads, seed_everything
from aigc_lib.data import load_mnist, ring
from aigc_lib.models.diffusion import MLPDenoiser, MLPDenoiserConfig
from aigc_lib.models.flow import FlowMatching, PairedFlow
from aigc_lib.models.unet import UNet, UNetConfig
from aigc_lib.training.diffusion import train_diffusion
from aigc_lib.zoo.diffusion import RING_SCALE, DiffusionTraining, MNISTDiffusion, RingDiffusion
from aigc_lib.zoo.recipe import Recipe


@dataclass
class MNISTFlow(Recipe):
    """The diffusion chapter's class-conditional U-Net, trained with the flow-matching loss at its budget."""

    name = "mnist-flow"
    chapter, cost = "flow_matching", "190 s"
    smoke_settings = dict(steps=3, batch_size=16)
    unet: UNetConfig = field(default_factory=lambda: MNISTDiffusion().unet)
    train: DiffusionTraining = field(default_factory=lambda: MNISTDiffusion().train)
    threads: int = 0

    def build(self) -> FlowMatching:
        seed_everything(self.train.seed)
        return FlowMatching(UNet(self.unet)).to(device())

    def fit(self, model: FlowMatching, progress: bool) -> dict:
        x, y = load_mnist("train")
        with pinned_threads(self.threads):
            return train_diffusion(model, 2 * x - 1, y, **vars(self.train), progress=progress,
                                   desc="MNIST U-Net flow matching")


@dataclass
class RingFlow(Recipe):
    """A flow-matching model of the 8-Gaussian ring: the ring diffusion model's MLP and budget.

    Like the diffusion model it sees the ring scaled by ``RING_SCALE``.
    """

    name = "ring-flow"
    chapter, cost = "flow_matching", "18 s, on one core"
    smoke_settings = dict(steps=10, n=2000)
    net: MLPDenoiserConfig = field(default_factory=lambda: RingDiffusion().net)
    n: int = field(default_factory=lambda: RingDiffusion().n)
    train: DiffusionTraining = field(default_factory=lambda: RingDiffusion().train)
    # t = u^2: the ring's modes are narrow, so the field near the data (small t) is the hard part;
    # t uniform (1.0) covers fewer modes at this budget (tools/flow_seeds.py measures both)
    t_exponent: float = 2.0

    def build(self) -> FlowMatching:
        seed_everything(self.train.seed)
        return FlowMatching(MLPDenoiser(self.net), self.t_exponent).to(device())

    def fit(self, model: FlowMatching, progress: bool) -> dict:
        x = RING_SCALE * ring(self.n, generator=generator(self.train.seed))
        with pinned_threads(1):  # a tiny MLP: one thread, the same run on any CPU
            return train_diffusion(model, x, **vars(self.train), progress=progress, desc="ring flow")


@dataclass
class RingReflow(Recipe):
    """The ring flow model after one reflow: retrained from its own weights on (ODE(eps), eps) pairs.

    The pairs come from ``ode_steps`` Euler steps of the base model from ``n_pairs`` noise draws;
    the training budget is the base model's.
    """

    name = "ring-reflow"
    chapter, cost = "flow_matching", "25 s, on one core, after ring-flow"
    smoke_settings = dict(steps=10, n_pairs=500, ode_steps=4)
    base: RingFlow = field(default_factory=RingFlow)
    n_pairs: int = 20_000
    ode_steps: int = 100
    train: DiffusionTraining = field(default_factory=lambda: RingDiffusion().train)

    def build(self) -> FlowMatching:
        seed_everything(self.train.seed)
        return FlowMatching(MLPDenoiser(self.base.net), self.base.t_exponent).to(device())

    def fit(self, model: FlowMatching, progress: bool) -> dict:
        base, _ = self.base.load(progress=False)
        model.load_state_dict(base.state_dict())  # reflow starts from the model it straightens
        with pinned_threads(1):
            eps = torch.randn(self.n_pairs, self.base.net.dim, generator=generator(self.train.seed + 7))
            x0 = base.sample(self.n_pairs, steps=self.ode_steps, noise=eps, batch_size=self.n_pairs)
            return train_diffusion(PairedFlow(model), torch.cat([x0, eps], dim=1), **vars(self.train),
                                   progress=progress, desc="ring reflow")


def ring_distance(x: torch.Tensor) -> float:
    """Mean distance of ring samples (data units) to the nearest of the ring's 8 centres (0: on a mode)."""
    from aigc_lib.data.toy import ring_modes

    return torch.cdist(x.float(), ring_modes().float()).min(dim=1).values.mean().item()


@torch.no_grad()
def ring_flow_report(flow, reflow, diffusion, n: int = 1000, seed: int = 1, ode_steps: int = 100) -> dict:
    """What the flow-matching chapter measures on the ring, from ``n`` noise draws of ``generator(seed)``.

    ``few_step``: modes covered and :func:`ring_distance` of 1- and 2-step Euler samples of the
    flow before and after reflow (and of its ``ode_steps``-step ODE solution); ``velocity_error``:
    E||v_theta - u_t||^2 / E||u_t||^2 at t = 0.2, 0.5, 0.8 against the closed-form marginal velocity
    u_t of the ring (a Gaussian mixture), at x_t on the path from real ring points; ``straightness``: mean path length / end-to-end distance of the
    flow's ``ode_steps``-step Euler paths, of the reflowed flow's, and of the diffusion model's
    probability-flow paths (DDIM, eta = 0, leading spacing, from the same noise) written on the
    linear path (:func:`~aigc_lib.models.flow.vp_to_flow`).
    """
    from aigc_lib.metrics.toy import ring_metrics
    from aigc_lib.data.toy import ring_modes
    from aigc_lib.models.flow import (diffusion_timesteps, interpolate, mixture_velocity, sample_diffusion,
                                      straightness, vp_to_flow)

    eps = torch.randn(n, 2, generator=generator(seed))
    out = {"few_step": {}, "straightness": {}, "velocity_error": {}}
    x0 = RING_SCALE * ring(n, generator=generator(seed + 1))
    for t in (0.2, 0.5, 0.8):  # relative squared error against the closed form, where x_t lives
        xt = interpolate(x0, eps, t)
        u = mixture_velocity(xt, t, RING_SCALE * ring_modes().float(), torch.tensor(RING_SCALE * 0.05))
        out["velocity_error"][str(t)] = ((flow.velocity(xt, t) - u).pow(2).sum(1).mean()
                                         / u.pow(2).sum(1).mean()).item()
    for name, model in (("flow", flow), ("reflow", reflow)):
        for steps in (1, 2):
            x = model.sample(n, steps=steps, noise=eps) / RING_SCALE
            out["few_step"][f"{name}/{steps}"] = {"modes": ring_metrics(x)["modes_covered"],
                                                  "distance": ring_distance(x)}
        _, path = model.sample(n, steps=ode_steps, noise=eps, batch_size=n, trajectory=True)
        out["straightness"][name] = straightness(path)
        x = path[-1] / RING_SCALE
        out["few_step"][f"{name}/{ode_steps}"] = {"modes": ring_metrics(x)["modes_covered"],
                                                  "distance": ring_distance(x)}
    ts = diffusion_timesteps(diffusion.T, ode_steps)  # leading: trailing's first step divides by sqrt(alpha_bar_999) ~ 0
    _, path = sample_diffusion(diffusion, n, ts, "ddim", noise=eps, batch_size=n, trajectory=True)
    abar = [diffusion.schedule.alpha_bar[t].item() for t in ts] + [1.0]
    out["straightness"]["diffusion"] = straightness([vp_to_flow(x, a)[0] for x, a in zip(path, abar)])
    x = path[-1] / RING_SCALE
    out["few_step"][f"diffusion/{ode_steps}"] = {"modes": ring_metrics(x)["modes_covered"],
                                                 "distance": ring_distance(x)}
    return out
