"""The flow-matching chapter's checked exercises: one Euler step and one Heun step of dx/dt = v(x, t)."""
import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.models.flow import euler_step as _euler_step, heun_step as _heun_step


class _Field:
    """A velocity that depends on x and on t (so a slope taken at the wrong time or place shows)."""

    def __init__(self, a: float, b: float):
        self.a, self.b = a, b

    def __call__(self, x, t):
        return -self.a * (1 + t) * x + self.b * t

    def __repr__(self):
        return f"velocity(x, t) = -{self.a} (1 + t) x + {self.b} t"


def _euler(x, v, t, t_next):
    return _euler_step(v, t, t_next, x)


@exercise(reference=_euler)
def euler_step(g):
    """(x, v, t, t_next): the state at t, the velocity there, and the earlier time to step to."""
    yield torch.zeros(1, 2), torch.ones(1, 2), 1.0, 0.5
    yield torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 3.0]]), 0.75, 0.0
    for shape, (t, t_next) in [((4, 2), (0.9, 0.6)), ((3, 8), (0.4, 0.3))]:
        yield torch.randn(shape, generator=g), torch.randn(shape, generator=g), t, t_next


@euler_step.mistake("the step size is h = t_next - t, which is negative here (time runs from 1 to 0): "
                    "you stepped by t - t_next, away from the data")
def _(x, v, t, t_next):
    return x + (t - t_next) * v


@euler_step.mistake("x_{t'} = x_t + (t' - t) v: you left out the step size and added the whole velocity")
def _(x, v, t, t_next):
    return x + v


@euler_step.mistake("x_{t'} = x_t + (t' - t) v: you multiplied by t_next, not by the step t_next - t")
def _(x, v, t, t_next):
    return x + t_next * v


def _heun(velocity, x, t, t_next):
    return _heun_step(velocity, t, t_next, x)


@exercise(reference=_heun)
def heun_step(g):
    """(velocity, x, t, t_next): a velocity function velocity(x, t), the state at t, the time to step to."""
    yield _Field(1.0, 0.0), torch.ones(1, 2), 1.0, 0.5
    for shape, (t, t_next), (a, b) in [((4, 2), (0.9, 0.6), (1.5, 0.5)), ((2, 8), (0.5, 0.0), (0.7, -1.0))]:
        yield _Field(a, b), torch.randn(shape, generator=g), t, t_next


@heun_step.mistake("Heun averages two slopes, (v(x, t) + v(x_euler, t_next)) / 2: you used only the second")
def _(velocity, x, t, t_next):
    h = t_next - t
    return x + h * velocity(x + h * velocity(x, t), t_next)


@heun_step.mistake("the second slope is taken at the Euler prediction x_euler = x + h v(x, t), not at x itself")
def _(velocity, x, t, t_next):
    h = t_next - t
    return x + h * 0.5 * (velocity(x, t) + velocity(x, t_next))


@heun_step.mistake("the two slopes are averaged: you added them without the factor 1/2")
def _(velocity, x, t, t_next):
    h = t_next - t
    v = velocity(x, t)
    return x + h * (v + velocity(x + h * v, t_next))
