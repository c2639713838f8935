"""GAN models, losses and training loop: shapes, math against closed forms, training, errors."""
import math

import pytest
import torch
from torch import nn

from aigc_lib import zoo
from aigc_lib.data import ring
from aigc_lib.metrics.toy import ring_metrics
from aigc_lib.models.gan import (DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator,
                                 critic_loss, discriminator_loss, generator_loss_nonsaturating,
                                 generator_loss_saturating, gradient_penalty, optimal_discriminator,
                                 wasserstein_generator_loss)
from aigc_lib.training.gan import GAN, GANTrainConfig, train_gan


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("n_classes", [0, 10])
def test_dcgan_shapes(n_classes):
    G, D = DCGANGenerator(z_dim=16, width=8, n_classes=n_classes), DCGANDiscriminator(width=8, n_classes=n_classes)
    y = torch.arange(5) % 10 if n_classes else None
    x = G(torch.randn(5, 16), y)
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1  # tanh range
    assert D(x, y).shape == (5,)
    assert DCGANDiscriminator(width=8, critic=True)(x).shape == (5,)
    s = G.eval().sample(3, y=7 if n_classes else None)
    assert s.shape == (3, 1, 28, 28) and 0 <= s.min() and s.max() <= 1  # data range


def test_default_dcgan_is_the_source_shape():
    """100-d noise -> 7x7x128 -> 14x14x64 -> 28x28x1."""
    G = DCGANGenerator()
    h = G.project(torch.randn(2, 100)).view(2, -1, 7, 7)
    assert h.shape == (2, 128, 7, 7)
    assert G.up[:3](h).shape == (2, 64, 14, 14)


@pytest.mark.parametrize("n_classes", [0, 3])
def test_mlp_shapes(n_classes):
    y = torch.tensor([0, 2]) if n_classes else None
    G = MLPGenerator(z_dim=4, out_shape=(1, 28, 28), hidden=16, depth=2, n_classes=n_classes, tanh=True)
    D = MLPDiscriminator(in_shape=(1, 28, 28), hidden=16, depth=2, n_classes=n_classes)
    x = G(torch.randn(2, 4), y)
    assert x.shape == (2, 1, 28, 28) and D(x, y).shape == (2,)
    toy = MLPGenerator(z_dim=2, out_shape=(2,), hidden=8)
    assert toy(torch.randn(7, 2)).shape == (7, 2)


# ----------------------------------------------------------------------------- losses
def test_losses_against_hand_computed_values():
    # logit 0 <=> D = 1/2: BCE = -log(1/2) - log(1 - 1/2) = 2 log 2
    zero = torch.zeros(4)
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    # D(x) = 0.9, D(G(z)) = 0.2: L_D = -log 0.9 - log 0.8
    l_real, l_fake = torch.tensor([math.log(0.9 / 0.1)]), torch.tensor([math.log(0.2 / 0.8)])
    assert discriminator_loss(l_real, l_fake).item() == pytest.approx(-math.log(0.9) - math.log(0.8))
    assert generator_loss_saturating(l_fake).item() == pytest.approx(math.log(1 - 0.2))
    assert generator_loss_nonsaturating(l_fake).item() == pytest.approx(-math.log(0.2))
    f_real, f_fake = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, 0.0])
    assert critic_loss(f_real, f_fake).item() == pytest.approx(-0.5 - 2.0)
    assert wasserstein_generator_loss(f_fake).item() == pytest.approx(0.5)


def test_losses_are_stable_for_confident_discriminators():
    big = torch.tensor([100.0])
    for value in (discriminator_loss(-big, big), generator_loss_nonsaturating(-big), generator_loss_saturating(big)):
        assert torch.isfinite(value)
    assert generator_loss_nonsaturating(-big).item() == pytest.approx(100.0)  # -log sigmoid(-100)


def test_saturating_gradient_vanishes_nonsaturating_does_not():
    """d/dl log(1 - sigmoid(l)) = -D and d/dl [-log sigmoid(l)] = -(1 - D)."""
    logits = torch.linspace(-8, 8, 17, requires_grad=True)
    D = torch.sigmoid(logits.detach())
    (g_sat,) = torch.autograd.grad(generator_loss_saturating(logits) * len(logits), logits)
    (g_ns,) = torch.autograd.grad(generator_loss_nonsaturating(logits) * len(logits), logits)
    torch.testing.assert_close(g_sat, -D)
    torch.testing.assert_close(g_ns, -(1 - D))
    assert g_sat[0].abs() < 1e-3 and g_ns[0].abs() > 0.99  # D(G(z)) ~ 0: early training


def test_optimal_discriminator_formula():
    p_data, p_g = torch.tensor([0.3, 0.0, 0.2]), torch.tensor([0.1, 0.4, 0.2])
    torch.testing.assert_close(optimal_discriminator(p_data, p_g), torch.tensor([0.75, 0.0, 0.5]))
    # D* maximises the pointwise integrand a log D + b log(1 - D)
    a, b = 0.3, 0.1
    grid = torch.linspace(0.001, 0.999, 9999)
    best = grid[(a * grid.log() + b * (1 - grid).log()).argmax()]
    assert best.item() == pytest.approx(a / (a + b), abs=1e-3)


def test_gradient_penalty_of_linear_critics():
    real, fake = torch.randn(32, 5), torch.randn(32, 5)
    unit = nn.Linear(5, 1)
    with torch.no_grad():
        unit.weight.copy_(torch.randn(1, 5)).div_(unit.weight.norm())  # ||w|| = 1: 1-Lipschitz
    critic = lambda x: unit(x).squeeze(1)  # noqa: E731
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        unit.weight.mul_(3.0)  # ||grad f|| = 3 everywhere: penalty (3 - 1)^2 = 4
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-5)


# ----------------------------------------------------------------------------- errors
def test_bad_labels_raise_clear_errors():
    G = DCGANGenerator(z_dim=8, width=4, n_classes=10)
    z = torch.randn(2, 8)
    with pytest.raises(ValueError, match="outside 0..9"):
        G(z, torch.tensor([3, 12]))
    with pytest.raises(ValueError, match="conditional"):
        G(z)
    with pytest.raises(ValueError, match="integers"):
        G(z, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="unconditional"):
        DCGANGenerator(z_dim=8, width=4)(z, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="outside 0..9"):
        G.sample(4, y=10)


def test_wrong_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="N x 1 x 28 x 28"):
        DCGANDiscriminator(width=4)(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="noise z"):
        DCGANGenerator(z_dim=8, width=4)(torch.randn(2, 9))


def test_non_finite_loss_stops_training():
    G, D = MLPGenerator(z_dim=2, hidden=8), MLPDiscriminator(hidden=8)
    x = ring(64)
    with torch.no_grad():
        D.linear.weight.fill_(float("nan"))  # a diverged discriminator
    with pytest.raises(FloatingPointError, match="diverged"):
        train_gan(G, D, x, steps=3, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        train_gan(G, D, torch.full((8, 2), float("nan")), steps=1, progress=False)


def test_train_gan_rejects_bad_settings():
    G, D = MLPGenerator(z_dim=2, hidden=8), MLPDiscriminator(hidden=8)
    with pytest.raises(ValueError, match="loss must be"):
        train_gan(G, D, ring(16), steps=1, loss="hinge", progress=False)
    with pytest.raises(ValueError, match="labels"):
        train_gan(G, D, ring(16), torch.zeros(16, dtype=torch.long), steps=1, progress=False)


# ----------------------------------------------------------------------------- training
def test_training_history_and_snapshots():
    G, D = MLPGenerator(z_dim=2, hidden=8), MLPDiscriminator(hidden=8)
    h = train_gan(G, D, ring(256), steps=10, batch_size=16, snapshot_every=5, snapshot_n=7, progress=False)
    assert len(h["loss_D"]) == len(h["loss_G"]) == 10
    assert h["snapshot_steps"] == [0, 5, 10] and h["snapshots"][0].shape == (7, 2)


def test_conditional_dcgan_trains_a_few_steps():
    G, D = DCGANGenerator(z_dim=8, width=4, n_classes=10), DCGANDiscriminator(width=4, n_classes=10)
    x, y = torch.rand(32, 1, 28, 28) * 2 - 1, torch.arange(32) % 10
    for loss in ("non-saturating", "wgan-gp"):
        D = DCGANDiscriminator(width=4, n_classes=10, critic=loss == "wgan-gp")
        h = train_gan(G, D, x, y, steps=2, batch_size=8, loss=loss, progress=False)
        assert all(math.isfinite(v) for v in h["loss_D"] + h["loss_G"])


@pytest.mark.slow
def test_short_ring_training_raises_modes_covered():
    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=2, hidden=64), MLPDiscriminator(hidden=64)
    x = ring(4096, generator=torch.Generator().manual_seed(0))
    before = ring_metrics(G.sample(1000, generator=torch.Generator().manual_seed(1)))
    train_gan(G, D, x, steps=800, batch_size=128, lr_g=1e-3, lr_d=1e-3, lr_decay=True, progress=False)
    after = ring_metrics(G.sample(1000, generator=torch.Generator().manual_seed(1)))
    assert after["modes_covered"] >= before["modes_covered"] + 3
    assert after["high_quality"] > before["high_quality"] + 0.1


def test_pacgan_packs_samples_for_the_discriminator():
    G, D = MLPGenerator(z_dim=2, hidden=8), MLPDiscriminator(in_shape=(4,), hidden=8)  # packs of 2
    h = train_gan(G, D, ring(64), steps=3, batch_size=8, pack=2, progress=False)
    assert len(h["loss_D"]) == 3
    with pytest.raises(ValueError, match="pack"):
        train_gan(G, D, ring(64), steps=1, batch_size=7, pack=2, progress=False)



def test_config_errors_name_the_valid_kinds():
    with pytest.raises(ValueError, match="vanilla"):
        zoo.RingGAN(kind="lsgan")
    with pytest.raises(ValueError, match="cdcgan"):
        zoo.MNISTGAN(kind="stylegan")
    with pytest.raises(ValueError, match="picks the defaults"):
        zoo.RingGAN().replace(kind="wgan-gp")


def test_ring_gans_share_one_sample_budget():
    def real_samples(kind):
        t = zoo.RingGAN(kind=kind).train
        assert isinstance(t, GANTrainConfig)
        return t.steps * t.n_critic * t.batch_size

    assert len({real_samples(k) for k in zoo.RING_KINDS}) == 1
    assert zoo.RingGAN(kind="pacgan").train.pack == 2
    assert zoo.RingGAN(kind="wgan-gp").train.loss == "wgan-gp"


def test_gan_recipes_take_the_seed_and_build_their_networks():
    recipe = zoo.RingGAN(kind="pacgan").replace(seed=3, n=500)
    assert recipe.train.seed == 3 and recipe.data.n == 500 and recipe.train.pack == 2
    gan = recipe.build()
    assert isinstance(gan, GAN) and gan.D(torch.zeros(5, 4)).shape[0] == 5  # D reads packs of 2 points
    assert zoo.MNISTGAN(kind="mlp").z_dim == 64 and zoo.MNISTGAN(kind="dcgan").z_dim == 100
    assert zoo.MNISTGAN(kind="cdcgan").build().G.n_classes == 10
    assert zoo.MNISTGAN(kind="dcgan").replace(seed=1).train.seed == 1
