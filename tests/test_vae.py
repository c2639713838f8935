"""Tests for aigc_lib.models.vae and aigc_lib.training.vae: shapes, the math, training, errors."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from aigc_lib.models.vae import (VAE, VAEConfig, gaussian_kl, gaussian_log_density, iwae_bound,
                                 mu_gradient_samples, negative_elbo, reparameterize)
from aigc_lib import zoo
from aigc_lib.training.vae import binarize, evaluate_elbo, evaluate_iwae, train_vae


def tiny(arch="mlp", **kw):
    torch.manual_seed(0)
    defaults = dict(z_dim=4, hidden=32, channels=4) if arch == "conv" else dict(z_dim=4, hidden=32)
    return VAE(VAEConfig(arch=arch, **{**defaults, **kw}))


def digits(n=8, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).bernoulli()


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_shapes(arch):
    model, x = tiny(arch), digits(5)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    out, mu, logvar, z = model(x)
    assert out.shape == x.shape and z.shape == (5, 4)
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 28, 28) and 0 <= s.min() and s.max() <= 1
    b = model.sample(3, mean=False)
    assert set(b.unique().tolist()) <= {0.0, 1.0}


def test_gaussian_likelihood_shapes_and_sampling_is_random():
    model = tiny(x_shape=(2,), likelihood="gaussian")
    x = torch.randn(7, 2)
    assert negative_elbo(model, x).rec.shape == (7,)
    a, b = model.sample(4, mean=False), model.sample(4, mean=False)
    assert a.shape == (4, 2) and not torch.equal(a, b)


# ---------------------------------------------------------------- the math
def test_gaussian_kl_matches_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
    assert torch.allclose(gaussian_kl(mu, logvar), kl_divergence(q, p).sum(-1), atol=1e-5)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(gaussian_kl(mu, logvar), mc, atol=0.05, rtol=0.02)
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_gaussian_log_density_matches_normal():
    z, mu, logvar = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    ref = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(gaussian_log_density(z, mu, logvar), ref, atol=1e-5)


def test_bernoulli_log_likelihood_matches_torch_distributions():
    model, x = tiny(), digits(4)
    logits = torch.randn(4, 1, 28, 28)
    ref = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(-1)
    assert torch.allclose(model.log_px_given_z(x, logits), ref, atol=1e-3)


def test_reparameterized_samples_have_the_right_mean_and_variance():
    mu, logvar = torch.tensor([1.5, -2.0]), torch.tensor([0.0, math.log(0.25)])
    z = reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mu, atol=0.01)
    assert torch.allclose(z.var(0), logvar.exp(), rtol=0.02)


def test_gradient_through_the_trick_matches_the_analytic_one():
    # E[z^2] = mu^2 + sigma^2, so d/dmu = 2 mu and d/dlogvar = sigma^2 = exp(logvar)
    mu = torch.tensor([0.7, -1.2], requires_grad=True)
    logvar = torch.tensor([0.3, -0.5], requires_grad=True)
    n = 400_000
    z = reparameterize(mu.expand(n, 2), logvar.expand(n, 2), generator=torch.Generator().manual_seed(1))
    z.pow(2).mean(0).sum().backward()
    assert torch.allclose(mu.grad, 2 * mu.detach(), atol=0.02)
    assert torch.allclose(logvar.grad, logvar.detach().exp(), atol=0.02)


def test_iwae_is_above_the_elbo_and_grows_with_k():
    model, x = tiny(), digits(16)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = torch.stack([-negative_elbo(model, x, beta=1.0, generator=g).neg_elbo for _ in range(300)]).mean()
        l1 = torch.stack([iwae_bound(model, x, 1, generator=g) for _ in range(300)]).mean()
    assert l1.item() == pytest.approx(elbo.item(), abs=0.5)  # L_1 is the ELBO, in expectation
    bounds = [iwae_bound(model, x, k, generator=g).mean().item() for k in (10, 100, 500)]
    assert elbo.item() < bounds[0] < bounds[1] < bounds[2]


def test_iwae_chunking_gives_the_same_bound():
    model, x = tiny(), digits(3)
    a = iwae_bound(model, x, 1000, generator=torch.Generator().manual_seed(0), chunk=1000)
    b = iwae_bound(model, x, 1000, generator=torch.Generator().manual_seed(1), chunk=7)
    assert a.shape == (3,) and torch.allclose(a, b, atol=1.0)


def test_score_function_and_reparam_agree_in_mean_but_not_in_variance():
    model, x = tiny(z_dim=2), digits(2)
    g = torch.Generator().manual_seed(0)
    rep = mu_gradient_samples(model, x, 20_000, "reparam", generator=g)
    sf = mu_gradient_samples(model, x, 20_000, "score", generator=g)
    assert rep.shape == sf.shape == (20_000, 2, 2)
    se = (sf.std(0) / math.sqrt(len(sf)))  # standard error of the score-function mean
    assert torch.all((rep.mean(0) - sf.mean(0)).abs() < 5 * se + 1e-3)
    assert (sf.var(0) / rep.var(0)).min() > 10
    with pytest.raises(ValueError, match="estimator"):
        mu_gradient_samples(model, x, 2, "magic")


def test_score_baseline_is_leave_one_out():
    model, x = tiny(z_dim=2), digits(2)
    sf = mu_gradient_samples(model, x, 5, "score", generator=torch.Generator().manual_seed(3))
    loo = mu_gradient_samples(model, x, 5, "score_baseline", generator=torch.Generator().manual_seed(3))
    # same draws: score = f * s and baseline = (f - mean of the other four f) * s, s = eps / sigma
    mu, logvar = model.encode(x)
    eps = torch.randn((5, *mu.shape), generator=torch.Generator().manual_seed(3))
    s = eps / torch.exp(0.5 * logvar.detach())
    f = sf / s
    expected = (f - (f.sum(0, keepdim=True) - f) / 4) * s
    torch.testing.assert_close(loo, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="n >= 2"):
        mu_gradient_samples(model, x, 1, "score_baseline")


# ---------------------------------------------------------------- training
def test_short_training_lowers_the_loss():
    model = tiny()
    x = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.3
    before = evaluate_elbo(model, binarize(x, torch.Generator().manual_seed(1)))["neg_elbo"]
    hist = train_vae(model, x, epochs=5, batch_size=64, lr=3e-3, progress=False)
    after = evaluate_elbo(model, binarize(x, torch.Generator().manual_seed(1)))["neg_elbo"]
    assert len(hist["loss"]) == 5 * 4 and after < before - 50


def test_beta_weights_the_kl():
    model, x = tiny(), digits(4)
    t0 = negative_elbo(model, x, beta=0.0, generator=torch.Generator().manual_seed(0))
    t2 = negative_elbo(model, x, beta=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(t2.loss - t0.loss, 2 * t0.kl.mean())


@pytest.mark.slow
def test_cached_mnist_vae_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    monkeypatch.setenv("AIGC_PROFILE", "quick")
    kw = dict(z_dim=2, hidden=16, epochs=1, progress=False)
    model, hist = zoo.mnist_vae(**kw)
    model2, hist2 = zoo.mnist_vae(**kw)
    assert (model.config.z_dim, model.config.hidden) == (2, 16)
    assert hist2["train_seconds"] == hist["train_seconds"] and len(hist["val_neg_elbo"]) == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


# ---------------------------------------------------------------- errors
def test_wrong_shape_raises_a_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match="N x 1 x 28 x 28"):
        model.encode(torch.rand(4, 784))
    with pytest.raises(ValueError, match="z must have shape"):
        model.decode(torch.randn(4, 7))


def test_out_of_range_pixels_raise():
    with pytest.raises(ValueError, match="divide by 255"):
        negative_elbo(tiny(), digits(2) * 255)


def test_nan_loss_raises():
    x = digits(2)
    model = tiny(x_shape=(1, 28, 28))
    with torch.no_grad():
        model.decoder.net[0].weight.fill_(float("nan"))
    assert torch.isnan(negative_elbo(model, x).loss)  # the loss itself just computes
    with pytest.raises(FloatingPointError, match="VAE loss.*step 0.*learning rate"):  # training stops at once
        train_vae(model, x, epochs=1, batch_size=2, progress=False)
    with pytest.raises(FloatingPointError, match="IWAE bound"):  # and so does the evaluation
        evaluate_iwae(model, x, k=2)


@pytest.mark.parametrize("kw, match", [(dict(arch="gru"), "arch"), (dict(likelihood="poisson"), "likelihood"),
                                       (dict(arch="conv", x_shape=(3, 32, 32)), "1 x 28 x 28"),
                                       (dict(z_dim=0), "z_dim"), (dict(beta=-1.0), "beta")])
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kw)


def test_bad_k_raises():
    with pytest.raises(ValueError, match="importance samples"):
        iwae_bound(tiny(), digits(2), 0)


def test_fixed_sigma_x_is_a_buffer_and_learned_one_a_parameter():
    fixed = tiny(x_shape=(2,), likelihood="gaussian", sigma_x=0.05)
    learned = tiny(x_shape=(2,), likelihood="gaussian")
    assert "logvar_x" in dict(fixed.named_buffers()) and "logvar_x" in dict(learned.named_parameters())
    assert torch.allclose(fixed.logvar_x.exp().sqrt(), torch.tensor(0.05))
    with pytest.raises(ValueError, match="sigma_x"):
        VAEConfig(likelihood="gaussian", x_shape=(2,), sigma_x=0.0)


def test_ring_vae_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    model, hist = zoo.ring_vae(n=200, epochs=1, progress=False)  # n is the recipe's data.n
    assert model.config.x_shape == (2,) and len(hist["loss"]) == 2
    assert zoo.ring_vae(n=200, epochs=1, progress=False)[1]["train_seconds"] == hist["train_seconds"]


def test_vae_recipes_follow_the_chapter():
    mlp, conv = zoo.MNISTVAE(), zoo.MNISTVAE(arch="conv")
    assert (mlp.model.hidden, mlp.model.z_dim, conv.model.hidden) == (400, 20, 256)
    assert mlp.replace(z_dim=2, beta=4.0).model == VAEConfig(hidden=400, channels=16, z_dim=2, beta=4.0)
    assert isinstance(conv.build().encoder, type(tiny("conv").encoder))
    with pytest.raises(ValueError, match="does not match"):
        zoo.MNISTVAE(arch="conv", model=VAEConfig(arch="mlp"))
    with pytest.raises(ValueError, match="picks the defaults"):
        mlp.replace(arch="conv")
    ring = zoo.RingVAE().replace(n=200, sigma_x=None)
    assert ring.data.n == 200 and ring.model.sigma_x is None and ring.model.likelihood == "gaussian"


def test_plot_helpers():
    import matplotlib
    matplotlib.use("Agg")
    from aigc_lib.plotting import interpolation_strips, latent_manifold, latent_scatter, reconstruction_grid
    model = tiny(z_dim=2)
    x = digits(4)
    assert reconstruction_grid(x, model.mean(model.encode(x)[0])) is not None
    assert latent_manifold(model.mean, n=4) is not None
    assert latent_scatter(torch.randn(10, 2), torch.arange(10)) is not None
    assert interpolation_strips([x, x], row_labels=["a", "b"]) is not None
    with pytest.raises(ValueError):
        reconstruction_grid(x, x[:2])
    with pytest.raises(ValueError):
        interpolation_strips([x, x[:2]])
