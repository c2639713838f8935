"""Diffusion: schedules, forward process and sampler steps against diffusers; the U-Net; training."""
import math

import pytest
import torch

import diffusers  # the reference implementation (a test dependency in requirements.txt)

from aigc_lib.models.diffusion import (Diffusion, LatentDiffusion, MLPDenoiser, NoiseSchedule, ddim_step,
                                       ddim_timesteps, ddpm_step, predict_x0)
from aigc_lib.models.unet import UNet
from aigc_lib.training.diffusion import train_diffusion
from aigc_lib.zoo import diffusion as recipes
KINDS = ("linear", "squaredcos_cap_v2")


def _pair(n=4, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g).clamp(-1, 1), torch.randn(n, *shape, generator=g)


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_equals_diffusers(kind):
    ours = NoiseSchedule(1000, kind)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind)
    torch.testing.assert_close(ours.betas, ref.betas, rtol=0, atol=1e-7)
    torch.testing.assert_close(ours.alpha_bar, ref.alphas_cumprod, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_add_noise_equals_diffusers(kind):
    ours = NoiseSchedule(1000, kind)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind)
    x0, eps = _pair(6)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(ours.add_noise(x0, eps, t), ref.add_noise(x0, eps, t), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_ddpm_step_equals_diffusers(kind, t):
    ours = NoiseSchedule(1000, kind)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind)  # fixed_small, clip to [-1, 1]
    xt, eps_hat = _pair(seed=1)
    xt = 3 * xt  # a noisy sample is not in [-1, 1]; the clip acts on x0_hat only
    expected = ref.step(eps_hat, t, xt, generator=torch.Generator().manual_seed(7)).prev_sample
    got = ddpm_step(ours, eps_hat, t, xt, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_equals_diffusers(kind, eta):
    ours = NoiseSchedule(1000, kind)
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule=kind)  # set_alpha_to_one, clip
    ref.set_timesteps(50)
    ts = ddim_timesteps(1000, 50)
    assert ts == ref.timesteps.tolist()
    xt, eps_hat = _pair(seed=2)
    for i, t in enumerate(ts[:3] + ts[-2:]):  # early, late and the final step to the data (prev_t < 0)
        prev_t = t - 1000 // 50
        expected = ref.step(eps_hat, t, xt, eta=eta, generator=torch.Generator().manual_seed(i)).prev_sample
        got = ddim_step(ours, eps_hat, t, prev_t, xt, eta=eta, generator=torch.Generator().manual_seed(i))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_closed_form_matches_the_chain():
    """t + 1 single noising steps have the closed form's mean sqrt(alpha_bar) x0 and variance 1 - alpha_bar."""
    schedule = NoiseSchedule(1000, "linear")
    x0 = torch.full((20_000, 1), 0.8)
    for t in (10, 300):
        xt = schedule.forward_chain(x0, t, generator=torch.Generator().manual_seed(t))
        ab = schedule.alpha_bar[t].item()
        assert abs(xt.mean().item() - math.sqrt(ab) * 0.8) < 0.02
        assert abs(xt.var().item() - (1 - ab)) < 0.03


def test_predict_x0_inverts_add_noise():
    schedule = NoiseSchedule(100, "squaredcos_cap_v2")
    x0, eps = _pair()
    for t in (0, 50, 99):
        xt = schedule.add_noise(x0, eps, torch.tensor(t))
        torch.testing.assert_close(predict_x0(schedule, xt, eps, t), x0, rtol=0, atol=2e-3 if t == 99 else 1e-5)


def test_schedule_snr_falls():
    for kind in KINDS:
        snr = NoiseSchedule(1000, kind).snr()
        assert (snr[1:] < snr[:-1]).all() and snr[-1] < 1e-3 < 1e3 < snr[0]


def test_unet_shapes_and_conditioning():
    torch.manual_seed(0)
    for kw in (dict(channels=8, patch=2, mult=(1, 2), attn_levels=(1,)), dict(channels=8, mult=(1, 2, 2), blocks=2)):
        net = UNet(n_classes=10, heads=2, **kw)
        x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 10, 999])
        out = net(x, t, torch.tensor([1, 2, 10]))
        assert out.shape == x.shape
        assert not torch.allclose(net(x, t, torch.tensor([3, 3, 3])), out)  # the label changes eps


def test_mlp_denoiser_and_sampler_shapes():
    torch.manual_seed(0)
    model = Diffusion(MLPDenoiser(dim=2, hidden=16, n_layers=1, n_classes=3), T=50, clip=None)
    g = torch.Generator().manual_seed(0)
    for sampler, steps in (("ddpm", None), ("ddpm", 10), ("ddim", 5)):
        assert model.sample(7, steps=steps, sampler=sampler, generator=g).shape == (7, 2)
    x, traj = model.sample(4, steps=5, y=1, guidance=3.0, trajectory=True, generator=g)
    assert x.shape == (4, 2) and len(traj) == 6 and torch.equal(traj[-1], x)


def test_sampling_repeats_with_the_same_generator():
    torch.manual_seed(0)
    model = Diffusion(MLPDenoiser(dim=2, hidden=16, n_layers=1), T=50, clip=None)
    a = model.sample(5, steps=10, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, steps=10, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    model = Diffusion(MLPDenoiser(dim=2, hidden=64, n_layers=2, n_classes=2), T=100, clip=None)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(2, (2000,), generator=g)
    x = torch.stack([2.0 * y - 1, torch.zeros(2000)], 1) + 0.05 * torch.randn(2000, 2, generator=g)
    hist = train_diffusion(model, x, y, steps=300, batch_size=128, lr=3e-3, p_uncond=0.2, progress=False)
    first, last = sum(hist["loss"][:30]) / 30, sum(hist["loss"][-30:]) / 30
    assert last < 0.7 * first, (first, last)
    # the guided conditional samples land on the asked cluster
    xs = model.sample(200, steps=20, y=torch.ones(200, dtype=torch.long), guidance=2.0,
                      generator=torch.Generator().manual_seed(1))
    assert (xs[:, 0] > 0).float().mean() > 0.95


def test_latent_wrapper_unstandardizes():
    torch.manual_seed(0)
    lat = LatentDiffusion(Diffusion(MLPDenoiser(dim=3, hidden=8, n_layers=1), T=20, clip=None), z_dim=3)
    lat.z_mean.fill_(5.0), lat.z_std.fill_(1e-6)
    z = lat.sample_latents(4, steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, torch.full((4, 3), 5.0), rtol=0, atol=1e-3)


def test_bad_input_raises():
    schedule = NoiseSchedule(100)
    x0, eps = _pair()
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule(100, "cubic")
    with pytest.raises(ValueError, match="T"):
        NoiseSchedule(1)
    with pytest.raises(ValueError, match="0 .. 99"):
        schedule.add_noise(x0, eps, torch.tensor(100))
    with pytest.raises(ValueError, match="shape"):
        schedule.add_noise(x0, eps[:, :, :4], torch.tensor(3))
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(100, 0)
    with pytest.raises(ValueError, match="eta"):
        ddim_step(schedule, eps, 50, 40, x0, eta=-1)
    with pytest.raises(ValueError, match="prev_t"):
        ddpm_step(schedule, eps, 10, x0, prev_t=10)
    with pytest.raises(ValueError, match="N x 1 x 28 x 28"):
        UNet(channels=8)(torch.randn(2, 1, 32, 32), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="divisible"):
        UNet(channels=8, patch=3)
    model = Diffusion(MLPDenoiser(dim=2, hidden=8, n_layers=1), T=10, clip=None)
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(3, y=1)
    with pytest.raises(ValueError, match="sampler"):
        model.sample(3, sampler="euler")
    with pytest.raises(ValueError, match="labels y"):
        train_diffusion(model, torch.randn(10, 2), torch.zeros(10, dtype=torch.long), steps=1, progress=False)
    cond = Diffusion(MLPDenoiser(dim=2, hidden=8, n_layers=1, n_classes=3), T=10, clip=None)
    with pytest.raises(ValueError, match="labels"):
        cond.net(torch.randn(2, 2), torch.tensor([1, 2]), torch.tensor([0, 7]))


@pytest.mark.parametrize("recipe", [recipes.MNISTDiffusion, recipes.RingDiffusion, recipes.MNISTLatentDiffusion])
def test_recipes_round_trip_and_take_overrides(recipe):
    r = recipe()
    assert type(r).from_dict(r.to_dict()) == r
    assert r.replace(seed=3).train.seed == 3 and r.replace(steps=7).train.steps == 7
    assert r.replace(seed=3).checkpoint_path() != r.checkpoint_path()


def test_latent_recipe_checks_the_vae_size():
    with pytest.raises(ValueError, match="latent dimensions"):
        recipes.MNISTLatentDiffusion().replace(dim=8)


def test_ring_recipe_trains_and_samples_near_the_ring(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    model, history = recipes.RingDiffusion().replace(steps=300, n=2000).load(progress=False)
    assert len(history["loss"]) == 300 and history["loss"][-1] < history["loss"][0]
    x = model.sample(400, steps=25, generator=torch.Generator().manual_seed(0)) / recipes.RING_SCALE
    radius = x.norm(dim=1)
    assert ((radius - 2).abs() < 0.5).float().mean() > 0.8, radius  # most samples land near radius 2


def test_digit_samples_from_pixel_and_latent_models():
    torch.manual_seed(0)
    pixel = Diffusion(UNet(channels=8, patch=2, mult=(1, 2), n_classes=10, heads=2), T=20)
    x = recipes.digit_samples(pixel, 4, recipes.balanced_labels(4), steps=5)
    assert x.shape == (4, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    torch.testing.assert_close(x, recipes.digit_samples(pixel, 4, recipes.balanced_labels(4), steps=5))  # seeded

    class Decoder(torch.nn.Module):  # stands in for a VAE: E[x | z] of a 2-d latent
        def mean(self, z):
            return torch.sigmoid(z.sum(1)).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)

    latent = LatentDiffusion(Diffusion(MLPDenoiser(dim=2, hidden=8, n_layers=1), T=20, clip=None), z_dim=2)
    assert recipes.digit_samples(latent, 3, steps=4, vae=Decoder()).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="vae="):
        recipes.digit_samples(latent, 3, steps=4)


def test_to_unit_and_balanced_labels():
    torch.testing.assert_close(recipes.to_unit(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])),
                               torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert recipes.balanced_labels(12).bincount().tolist() == [2, 2] + [1] * 8
    with pytest.raises(ValueError):
        recipes.balanced_labels(0)
