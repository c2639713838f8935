"""The GAN chapter's checked exercises: the discriminator's loss and the optimal discriminator D*."""
import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.models.gan import discriminator_loss as _discriminator_loss
from aigc_lib.models.gan import optimal_discriminator as _optimal_discriminator


@exercise(reference=_discriminator_loss)
def discriminator_loss(g):
    """(real_logits, fake_logits): D(x) = sigmoid(logit); batches of different sizes."""
    yield torch.zeros(2), torch.zeros(2)                     # D = 1/2 everywhere: 2 log 2
    yield torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 1.0])
    yield torch.tensor([30.0, -30.0]), torch.tensor([-30.0, 100.0])   # confident, right and wrong
    for n in (4, 16):
        yield torch.randn(n, generator=g) * 2, torch.randn(n + 3, generator=g) * 2


@discriminator_loss.mistake("real samples have label 1 and fakes 0: you swapped the labels "
                            "(-log D(x) for real, -log(1 - D(G(z))) for fake)")
def _(real_logits, fake_logits):
    return torch.nn.functional.softplus(real_logits).mean() + torch.nn.functional.softplus(-fake_logits).mean()


@discriminator_loss.mistake("the loss is an expectation: average each term over its batch, do not sum")
def _(real_logits, fake_logits):
    return torch.nn.functional.softplus(-real_logits).sum() + torch.nn.functional.softplus(fake_logits).sum()


@discriminator_loss.mistake("the discriminator *minimises* -log D(x) - log(1 - D(G(z))): you have the sign "
                            "of V(D, G), which it maximises")
def _(real_logits, fake_logits):
    return -(torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean())


@discriminator_loss.mistake("log(sigmoid(l)) and log(1 - sigmoid(l)) overflow to -inf for large logits: write "
                            "them as -softplus(-l) and -softplus(l) (or F.binary_cross_entropy_with_logits)")
def _(real_logits, fake_logits):
    d_real, d_fake = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
    return -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()


@exercise(reference=_optimal_discriminator)
def optimal_discriminator(g):
    """(p_data, p_g): two densities at the same points x."""
    yield torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.5])            # p_g = p_data: D* = 1/2
    yield torch.tensor([0.9, 0.0, 0.2]), torch.tensor([0.1, 0.4, 0.6])
    for n in (5, 40):
        yield torch.rand(n, generator=g) + 0.01, torch.rand(n, generator=g) + 0.01


@optimal_discriminator.mistake("D* is the probability that x is *real*: p_data / (p_data + p_g), "
                               "you have p_g on top")
def _(p_data, p_g):
    return p_g / (p_data + p_g)


@optimal_discriminator.mistake("D* is a probability in [0, 1]: p_data / (p_data + p_g), not the density "
                               "ratio p_data / p_g")
def _(p_data, p_g):
    return p_data / p_g


@optimal_discriminator.mistake("D*(x) is pointwise: divide by p_data(x) + p_g(x) at the same x, "
                               "not by a sum over all points")
def _(p_data, p_g):
    return p_data / (p_data + p_g).sum()
