import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGMM

from aigc_lib.models.mixture import GaussianMixture


def make_data(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    pi = torch.tensor([0.5, 0.3, 0.2])
    k = torch.multinomial(pi, n, replacement=True, generator=g)
    scale = torch.tensor([0.5, 1.0, 0.7])[k, None]
    return mu[k] + scale * torch.randn(n, 2, generator=g), mu, pi


def test_recovers_known_parameters():
    x, mu, pi = make_data()
    m = GaussianMixture(3).fit(x, generator=torch.Generator().manual_seed(0))
    order = torch.cdist(mu, m.mu.float()).argmin(1)  # match components to truth
    assert torch.allclose(m.mu[order].float(), mu, atol=0.15)
    assert torch.allclose(m.pi[order].float(), pi, atol=0.03)
    assert torch.allclose(m.Sigma[order][0].float(), 0.25 * torch.eye(2), atol=0.05)


def test_em_never_decreases_likelihood_and_matches_sklearn():
    x, _, _ = make_data(seed=1)
    m = GaussianMixture(3).fit(x, generator=torch.Generator().manual_seed(0))
    ll = torch.tensor(m.log_likelihoods)
    assert (ll[1:] - ll[:-1] >= -1e-9).all()
    sk = SkGMM(3, random_state=0).fit(x.numpy())
    assert m.log_prob(x).mean().item() == pytest.approx(sk.score(x.numpy()), abs=1e-3)


def test_samples_follow_the_fit():
    x, _, _ = make_data(seed=2)
    m = GaussianMixture(3).fit(x, generator=torch.Generator().manual_seed(0))
    s = m.sample(20000, generator=torch.Generator().manual_seed(1))
    assert s.shape == (20000, 2)
    assert torch.allclose(s.mean(0), x.mean(0), atol=0.1)


def test_clear_errors():
    with pytest.raises(ValueError, match="k"):
        GaussianMixture(0)
    with pytest.raises(ValueError, match="N x D"):
        GaussianMixture(2).fit(torch.zeros(5))
    with pytest.raises(RuntimeError, match="fit"):
        GaussianMixture(2).sample(3)
