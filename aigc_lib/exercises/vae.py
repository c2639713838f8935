"""The VAE chapter's checked exercises: the Gaussian KL in closed form, the reparameterized sample."""
import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.models.vae import gaussian_kl as _gaussian_kl, reparameterize as _reparameterize


@exercise(reference=_gaussian_kl)
def gaussian_kl(g):
    """(mu, logvar) of shape (batch, z_dim); the KL is 0 at mu = 0, logvar = 0."""
    yield torch.zeros(1, 2), torch.zeros(1, 2)
    yield torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, -1.0]])
    for shape in [(4, 2), (3, 16), (2, 1)]:
        yield torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@gaussian_kl.mistake("the variance is sigma^2 = exp(logvar): you wrote logvar where the formula has the "
                     "variance (only log sigma^2 is logvar)")
def _(mu, logvar):
    return 0.5 * (mu**2 + logvar - 1 - logvar).sum(-1)


@gaussian_kl.mistake("the KL of a diagonal Gaussian is a sum over the latent dimensions: you took the mean")
def _(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean(-1)


@gaussian_kl.mistake("there is a factor 1/2 in front of the sum")
def _(mu, logvar):
    return (mu**2 + logvar.exp() - 1 - logvar).sum(-1)


def _reparameterized(mu, logvar, eps):
    return _reparameterize(mu, logvar, eps)


@exercise(reference=_reparameterized)
def reparameterize(g):
    """(mu, logvar, eps), eps drawn outside so the sample is a function of its arguments."""
    yield torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1.0, -1.0, 0.5]])
    for shape in [(4, 2), (2, 8)]:
        yield tuple(torch.randn(shape, generator=g) for _ in range(3))


@reparameterize.mistake("sigma = exp(logvar / 2): you multiplied eps by the variance exp(logvar)")
def _(mu, logvar, eps):
    return mu + logvar.exp() * eps


@reparameterize.mistake("sigma = exp(logvar / 2): you multiplied eps by logvar itself")
def _(mu, logvar, eps):
    return mu + logvar * eps


@reparameterize.mistake("sigma = exp(logvar / 2), not exp(logvar) / 2: mind the brackets")
def _(mu, logvar, eps):
    return mu + torch.exp(logvar) / 2 * eps
