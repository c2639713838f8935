"""Flow matching: the Euler step and trailing spacing against diffusers, the marginal velocity of a
Gaussian mixture, solver orders, DDIM as an Euler step of the probability-flow ODE, training, errors."""
import math

import pytest
import torch

import diffusers  # the reference implementation (a test dependency in requirements.txt)

from aigc_lib.models.diffusion import Diffusion, MLPDenoiser, NoiseSchedule, ddim_step, predict_x0
from aigc_lib.models.flow import (FlowMatching, LinearODE, PairedFlow, diffusion_timesteps, eps_to_velocity,
                                  euler_step, flow_times, heun_step, interpolate, mixture_velocity,
                                  predict_x0_eps, sample_diffusion, solve, stochastic_step, straightness,
                                  target_velocity, vp_to_flow)
from aigc_lib.training.diffusion import train_diffusion
from aigc_lib.zoo import flow as recipes


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("steps", [1, 4, 28])
def test_euler_step_equals_diffusers(steps):
    ref = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    ref.set_timesteps(steps)
    g = _g(steps)
    x = torch.randn(3, 1, 8, 8, generator=g)
    for i, timestep in enumerate(ref.timesteps):
        v = torch.randn(x.shape, generator=g)
        t, t_next = ref.sigmas[i].item(), ref.sigmas[i + 1].item()
        ours = euler_step(v, t, t_next, x)
        x = ref.step(v, timestep, x).prev_sample
        torch.testing.assert_close(ours, x, rtol=0, atol=1e-6)


def test_flow_times_match_diffusers_shift():
    ref = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    ref.set_timesteps(10)
    ours = flow_times(10, shift=3.0)
    # diffusers stops its grid at t = 1/1000 before the final 0; the shift map is the same
    u = ref.sigmas[:-1] / 3 / (1 - ref.sigmas[:-1] * (1 - 1 / 3))  # unshifted
    torch.testing.assert_close(ref.sigmas[:-1], 3 * u / (1 + 2 * u), rtol=0, atol=1e-6)
    assert ours[0] == 1 and ours[-1] == 0 and torch.all(ours[1:] < ours[:-1])


@pytest.mark.parametrize("steps", [1, 2, 10, 50, 999])
def test_trailing_spacing_equals_diffusers(steps):
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    ref.set_timesteps(steps)
    assert diffusion_timesteps(1000, steps, "trailing") == ref.timesteps.tolist()
    lead = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="leading")
    lead.set_timesteps(steps)
    assert diffusion_timesteps(1000, steps, "leading") == lead.timesteps.tolist()


def test_path_target_and_inversion():
    g = _g()
    x0, eps = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    t = torch.rand(5, generator=g)
    xt = interpolate(x0, eps, t)
    v = target_velocity(x0, eps)
    torch.testing.assert_close(interpolate(x0, eps, 0.0), x0)
    torch.testing.assert_close(interpolate(x0, eps, 1.0), eps)
    a, b = predict_x0_eps(xt, v, t)
    torch.testing.assert_close(a, x0), torch.testing.assert_close(b, eps)


def test_stochastic_step_with_eta_zero_is_euler_and_ends_at_x0():
    g = _g()
    x, v = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    torch.testing.assert_close(stochastic_step(v, 0.7, 0.4, x, eta=0.0), euler_step(v, 0.7, 0.4, x))
    torch.testing.assert_close(stochastic_step(v, 0.7, 0.0, x, eta=1.0), predict_x0_eps(x, v, 0.7)[0])
    # eta = 1 matches DDIM's sigma: the noise variance is DDPM's posterior variance in the rescaled path
    z = torch.randn(4, 2, generator=g)
    out = stochastic_step(v, 0.7, 0.4, x, eta=1.0, noise=z) - stochastic_step(v, 0.7, 0.4, x, eta=1.0, noise=0 * z)
    snr = lambda s: (1 - s) ** 2 / s ** 2  # noqa: E731
    torch.testing.assert_close(out, 0.4 * math.sqrt(1 - snr(0.7) / snr(0.4)) * z)


def test_ddim_eta0_is_an_euler_step_of_the_flow_ode():
    """DDIM (eta = 0, no clip) from t to s, mapped to the linear path, is one Euler step there."""
    schedule = NoiseSchedule(1000, "squaredcos_cap_v2")
    g = _g(3)
    x, eps_hat = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    for t, s in [(999, 899), (600, 300), (100, 0), (40, -1)]:
        x_ddim = ddim_step(schedule, eps_hat, t, s, x, eta=0.0, clip=None)
        xf, tf = vp_to_flow(x, schedule.alpha_bar[t])
        ab_s = schedule.alpha_bar[s] if s >= 0 else torch.tensor(1.0)
        xf_ddim, tf_s = vp_to_flow(x_ddim, ab_s)
        v = eps_to_velocity(xf, tf, eps_hat)
        torch.testing.assert_close(euler_step(v, tf, tf_s, xf), xf_ddim, rtol=1e-3, atol=2e-5)
        torch.testing.assert_close(predict_x0_eps(xf, v, tf)[0], predict_x0(schedule, x, eps_hat, t), rtol=1e-3, atol=2e-5)


def test_heun_error_is_second_order_euler_first():
    ode, x1 = LinearODE(lam=1.5), torch.ones(1, 1)
    exact = ode.exact(x1, 0.0)
    err = {m: [(solve(ode, x1, n, m) - exact).abs().item() for n in (10, 20, 40)] for m in ("euler", "heun")}
    for m, order in (("euler", 1), ("heun", 2)):
        ratios = [math.log2(a / b) for a, b in zip(err[m], err[m][1:])]
        assert all(abs(r - order) < 0.15 for r in ratios), (m, err[m], ratios)


def test_mixture_velocity_matches_monte_carlo():
    means, stds = torch.tensor([[-1.0], [1.5]]), torch.tensor([0.2, 0.4])
    g = _g(1)
    n = 400_000
    k = (torch.rand(n, generator=g) < 0.5).long()
    x0 = means[k] + stds[k, None] * torch.randn(n, 1, generator=g)
    eps = torch.randn(n, 1, generator=g)
    t = 0.5
    xt = interpolate(x0, eps, t)
    bins = (xt.squeeze() > 0.2) & (xt.squeeze() < 0.3)
    mc = target_velocity(x0, eps)[bins].mean()
    closed = mixture_velocity(torch.tensor([[0.25]]), t, means, stds).item()
    assert abs(mc.item() - closed) < 0.03, (mc, closed)


def test_trained_model_learns_the_marginal_velocity():
    """Regressing the conditional velocity gives the closed-form marginal one (tolerance: 10% of its variance)."""
    means, stds = torch.tensor([[-1.0], [1.0]]), torch.tensor([0.3, 0.3])
    g = _g(2)
    k = torch.randint(2, (4000,), generator=g)
    x = means[k] + stds[k, None] * torch.randn(4000, 1, generator=g)
    model = FlowMatching(MLPDenoiser(dim=1, hidden=64, n_layers=2))
    train_diffusion(model, x, steps=1500, batch_size=256, lr=3e-3, ema_decay=0.99, progress=False)
    xs = torch.linspace(-2, 2, 81)[:, None]
    for t in (0.3, 0.6, 0.9):
        with torch.no_grad():
            v = model.velocity(xs, t)
        u = mixture_velocity(xs, t, means, stds)
        rel = ((v - u) ** 2).mean() / u.var()
        assert rel < 0.1, (t, rel.item())


def test_tiny_run_lowers_the_loss_and_reflow_trains():
    g = _g(4)
    x = torch.randn(512, 2, generator=g) * 0.1 + 1
    model = FlowMatching(MLPDenoiser(dim=2, hidden=32, n_layers=1))
    hist = train_diffusion(model, x, steps=200, batch_size=128, lr=3e-3, progress=False)
    assert sum(hist["loss"][-20:]) < 0.7 * sum(hist["loss"][:20])
    eps = torch.randn(512, 2, generator=g)
    x0 = model.sample(512, steps=20, noise=eps)
    hist = train_diffusion(PairedFlow(model), torch.cat([x0, eps], 1), steps=50, batch_size=128, progress=False)
    assert all(math.isfinite(v) for v in hist["loss"])
    out, path = model.sample(8, steps=5, sampler="heun", generator=_g(), trajectory=True)
    assert out.shape == (8, 2) and len(path) == 6 and straightness(path) >= 1 - 1e-5


def test_unet_flow_and_guided_samplers_run():
    recipe = recipes.MNISTFlow().replace(channels=8, mult=(1, 2), attn_levels=(), steps=2, batch_size=4)
    model = recipe.build()
    y = torch.arange(3)
    for sampler in ("euler", "heun", "stochastic"):
        out = model.sample(3, steps=2, sampler=sampler, y=y, guidance=2.0, generator=_g())
        assert out.shape == (3, 1, 28, 28) and torch.isfinite(out).all()


def test_sample_diffusion_leading_equals_the_chapter_sampler():
    torch.manual_seed(0)
    model = Diffusion(MLPDenoiser(dim=2, hidden=16, n_layers=1), 1000, "squaredcos_cap_v2", clip=None).eval()
    ours = sample_diffusion(model, 5, diffusion_timesteps(1000, 10), "ddim", generator=_g(5))
    ref = model.sample(5, steps=10, sampler="ddim", generator=_g(5))
    torch.testing.assert_close(ours, ref)
    trailing = sample_diffusion(model, 5, diffusion_timesteps(1000, 10, "trailing"), "ddpm", generator=_g(5))
    assert trailing.shape == (5, 2) and torch.isfinite(trailing).all()


def test_bad_input_raises_clear_errors():
    x, v = torch.zeros(2, 2), torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate(x, v, 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        euler_step(v, -0.1, -0.2, x)
    with pytest.raises(ValueError, match="earlier"):
        euler_step(v, 0.2, 0.5, x)
    with pytest.raises(ValueError, match="steps"):
        flow_times(0)
    with pytest.raises(ValueError, match="steps"):
        solve(LinearODE(), x, 0)
    with pytest.raises(ValueError, match="shape"):
        euler_step(torch.zeros(2, 3), 0.5, 0.2, x)
    with pytest.raises(ValueError, match="shape"):
        interpolate(x, torch.zeros(3, 2), 0.5)
    with pytest.raises(ValueError, match="sampler"):
        FlowMatching(MLPDenoiser(dim=2)).sample(2, sampler="rk4")
    with pytest.raises(ValueError, match="steps"):
        FlowMatching(MLPDenoiser(dim=2)).sample(2, steps=0)
    with pytest.raises(ValueError, match="spacing"):
        diffusion_timesteps(1000, 10, "middle")
    with pytest.raises(ValueError, match="eta"):
        stochastic_step(v, 0.5, 0.2, x, eta=-1)
    with pytest.raises(ValueError, match="label"):
        FlowMatching(MLPDenoiser(dim=2)).loss(x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="t_exponent"):
        FlowMatching(MLPDenoiser(dim=2), t_exponent=0)


def test_t_exponent_draws_training_times_as_a_power_of_a_uniform():
    """t = u^k: with k = 2 the loss sees t < 1/4 half the time (P(u^2 < 1/4) = P(u < 1/2))."""
    seen = []

    class Spy(MLPDenoiser):
        def forward(self, x, t, y=None):
            seen.append(t / 1000)
            return super().forward(x, t, y)

    for k, share in ((1.0, 0.25), (2.0, 0.5)):
        seen.clear()
        FlowMatching(Spy(dim=2), t_exponent=k).loss(torch.zeros(20_000, 2), generator=_g(0))
        assert abs((seen[0] < 0.25).float().mean().item() - share) < 0.02


def test_recipes_copy_the_diffusion_budget():
    from aigc_lib.zoo.diffusion import MNISTDiffusion, RingDiffusion
    assert recipes.MNISTFlow().unet == MNISTDiffusion().unet and recipes.MNISTFlow().train == MNISTDiffusion().train
    assert recipes.RingFlow().train == RingDiffusion().train and recipes.RingFlow().net == RingDiffusion().net
