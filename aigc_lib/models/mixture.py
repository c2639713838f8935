"""A Gaussian mixture model fitted by maximum likelihood with the EM algorithm.

    p(x) = sum_k pi_k N(x | mu_k, Sigma_k)

E-step: responsibilities r_nk = pi_k N(x_n | mu_k, Sigma_k) / p(x_n).
M-step: N_k = sum_n r_nk, pi_k = N_k / N, mu_k = sum_n r_nk x_n / N_k,
        Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k  (+ a small ridge for stability).
Each EM step never decreases the log-likelihood (Dempster, Laird & Rubin 1977).
"""
from __future__ import annotations

import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal


class GaussianMixture:
    def __init__(self, k: int, reg: float = 1e-6):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (the number of components) must be an int >= 1, got {k!r}")
        self.k, self.reg = k, reg
        self.pi = self.mu = self.Sigma = None
        self.log_likelihoods: list[float] = []

    @property
    def distribution(self) -> MixtureSameFamily:
        if self.pi is None:
            raise RuntimeError("call fit(x) first")
        return MixtureSameFamily(Categorical(probs=self.pi), MultivariateNormal(self.mu, self.Sigma))

    def _log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x_n | mu_k, Sigma_k), shape N x K."""
        comps = MultivariateNormal(self.mu, self.Sigma)
        return comps.log_prob(x[:, None, :]) + self.pi.log()

    def fit(self, x: torch.Tensor, n_iter: int = 200, tol: float = 1e-6,
            generator: torch.Generator | None = None) -> "GaussianMixture":
        """Run EM from k data points chosen at random (k-means++ style spread) until the mean
        log-likelihood improves by less than ``tol``."""
        if x.ndim != 2:
            raise ValueError(f"x must be N x D, got shape {tuple(x.shape)}")
        n, d = x.shape
        if n < self.k:
            raise ValueError(f"need at least k={self.k} points, got {n}")
        x = x.double()
        # k-means++ seeding: each new centre is far from the ones already chosen
        centres = [x[torch.randint(n, (1,), generator=generator)].squeeze(0)]
        for _ in range(1, self.k):
            d2 = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
            centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=generator)].squeeze(0))
        self.mu = torch.stack(centres)
        self.Sigma = torch.cov(x.T).expand(self.k, d, d).clone() + self.reg * torch.eye(d, dtype=x.dtype)
        self.pi = torch.full((self.k,), 1.0 / self.k, dtype=x.dtype)
        self.log_likelihoods = []
        eye = torch.eye(d, dtype=x.dtype)
        for _ in range(n_iter):
            log_joint = self._log_joint(x)                            # E-step
            log_px = torch.logsumexp(log_joint, dim=1, keepdim=True)
            r = (log_joint - log_px).exp()
            self.log_likelihoods.append(log_px.mean().item())
            Nk = r.sum(0)                                             # M-step
            self.pi = Nk / n
            self.mu = (r.T @ x) / Nk[:, None]
            diff = x[:, None, :] - self.mu                           # N x K x D
            self.Sigma = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / Nk[:, None, None] + self.reg * eye
            if len(self.log_likelihoods) > 1 and abs(self.log_likelihoods[-1] - self.log_likelihoods[-2]) < tol:
                break
        return self

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for each row of x."""
        return self.distribution.log_prob(x.double())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling: pick a component k ~ pi, then x ~ N(mu_k, Sigma_k)."""
        if self.pi is None:
            raise RuntimeError("call fit(x) first")
        k = torch.multinomial(self.pi, n, replacement=True, generator=generator)
        L = torch.linalg.cholesky(self.Sigma)[k]                        # n x D x D
        eps = torch.randn(n, self.mu.shape[1], 1, dtype=self.mu.dtype, generator=generator)
        return (self.mu[k] + (L @ eps).squeeze(-1)).float()
