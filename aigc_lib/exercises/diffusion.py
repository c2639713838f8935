"""The diffusion chapter's checked exercises: the forward process in one go, one DDIM step."""
import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.models.diffusion import NoiseSchedule, ddim_step as _ddim_step


def _add_noise(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps: ``NoiseSchedule.add_noise``."""
    return schedule.add_noise(x0, eps, t)


def _ddim_step_eta0(schedule: NoiseSchedule, xt: torch.Tensor, eps_hat: torch.Tensor, t: int,
                    prev_t: int) -> torch.Tensor:
    """The package's ``ddim_step`` with eta = 0 (deterministic) and no clipping of x0_hat."""
    return _ddim_step(schedule, eps_hat, t, prev_t, xt, eta=0.0, clip=None)


SCHEDULES = (NoiseSchedule(T=50), NoiseSchedule(T=50, kind="squaredcos_cap_v2"))


@exercise(reference=_add_noise)
def add_noise(g):
    """(schedule, x0, eps, t) with one step t per example."""
    linear, cosine = SCHEDULES
    yield linear, torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([0, 49])
    for schedule, shape in [(linear, (4, 2)), (cosine, (3, 1, 4, 4))]:
        x0, eps = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        yield schedule, x0, eps, torch.randint(0, 50, (shape[0],), generator=g)


@add_noise.mistake("x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps: you left out the square roots "
                   "(the variances add, the scales are their square roots)")
def _(schedule, x0, eps, t):
    ab = schedule.alpha_bar[t].view(-1, *[1] * (x0.dim() - 1))
    return ab * x0 + (1 - ab) * eps


@add_noise.mistake("the one-step formula uses alpha_bar_t = prod_{s<=t} alpha_s, not alpha_t = 1 - beta_t")
def _(schedule, x0, eps, t):
    a = schedule.alphas[t].view(-1, *[1] * (x0.dim() - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


@add_noise.mistake("the steps count from 0: x_t uses alpha_bar[t], not alpha_bar[t - 1]")
def _(schedule, x0, eps, t):
    ab = schedule.alpha_bar[t - 1].view(-1, *[1] * (x0.dim() - 1))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


@exercise(reference=_ddim_step_eta0)
def ddim_step(g):
    """(schedule, xt, eps_hat, t, prev_t); prev_t = -1 is the last step, to the data."""
    linear, cosine = SCHEDULES
    for schedule, shape, t, prev_t in [(linear, (2, 3), 10, 5), (linear, (4, 2), 49, 39),
                                       (cosine, (2, 1, 3, 3), 20, 10), (cosine, (3, 2), 4, -1)]:
        yield schedule, torch.randn(shape, generator=g), torch.randn(shape, generator=g), t, prev_t


def _x0_hat(schedule, xt, eps_hat, t):
    ab = schedule.alpha_bar[t]
    return (xt - (1 - ab).sqrt() * eps_hat) / ab.sqrt()


@ddim_step.mistake("DDIM moves with the cumulative alpha_bar (alpha_bar_t, alpha_bar_prev), not the "
                   "per-step alpha_t")
def _(schedule, xt, eps_hat, t, prev_t):
    a_t, a_prev = schedule.alphas[t], schedule.alphas[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    x0_hat = (xt - (1 - a_t).sqrt() * eps_hat) / a_t.sqrt()
    return a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps_hat


@ddim_step.mistake("x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev) eps_hat: you dropped "
                   "the second term, which points back from x0_hat to x_prev's noise level")
def _(schedule, xt, eps_hat, t, prev_t):
    ab_prev = schedule.alpha_bar[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    return ab_prev.sqrt() * _x0_hat(schedule, xt, eps_hat, t)


@ddim_step.mistake("prev_t = -1 means 'to the data': alpha_bar_prev = 1 there, not alpha_bar[-1] "
                   "(Python's last entry)")
def _(schedule, xt, eps_hat, t, prev_t):
    ab_prev = schedule.alpha_bar[prev_t]
    return ab_prev.sqrt() * _x0_hat(schedule, xt, eps_hat, t) + (1 - ab_prev).sqrt() * eps_hat


@ddim_step.mistake("x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t): you left out a "
                   "square root")
def _(schedule, xt, eps_hat, t, prev_t):
    ab, ab_prev = schedule.alpha_bar[t], schedule.alpha_bar[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    x0_hat = (xt - (1 - ab) * eps_hat) / ab
    return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps_hat
