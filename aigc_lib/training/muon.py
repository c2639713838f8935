"""Muon (Jordan et al. 2024): momentum, orthogonalised, for the weight matrices of a network.

For a matrix ``W`` with gradient ``G`` the step is

    M <- mu M + (1 - mu) G                      momentum (an exponential average)
    N  = (1 - mu) G + mu M                      Nesterov: look one step ahead
    W <- W - lr * sqrt(max(1, rows/cols)) * orth(N)

where ``orth(N) ~ P Q^T`` for the SVD ``N = P S Q^T``: every singular value of the update set to
about 1 (all but tiny ones). A gradient of a weight matrix is typically dominated by a few directions; AdamW's update
inherits that, so the rare directions barely move. ``orth`` moves all of them at the same rate.

The SVD is too slow to take every step, so ``orth`` runs five steps of a Newton-Schulz iteration,
``X <- a X + (b A + c A^2) X`` with ``A = X X^T``, after scaling ``X`` to norm 1. Each step is an odd
polynomial of the singular values that pushes them towards 1; the coefficients
(3.4445, -4.7750, 2.0315) trade exactness for speed: singular values that are not tiny end
anywhere in about [0.6, 1.2] (the tests check it on random matrices).

``torch.optim.Muon`` (PyTorch >= 2.9) implements the same step and the tests check that the two
agree. The book writes it out because it is short and is the lesson, and because ``torch>=2.4`` is
all the book requires. torch's version always iterates in bfloat16; this one takes the precision as
a setting (bfloat16 on CUDA, float32 elsewhere, where bfloat16 brings no speed: 2.5 ms for a
512 x 128 matrix either way on the book's 2-core CPU).
"""
from __future__ import annotations

import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(G: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32,
                  eps: float = 1e-7) -> torch.Tensor:
    """About ``U V^T`` for the SVD ``G = U S V^T`` of a matrix, by ``steps`` Newton-Schulz steps."""
    if G.dim() != 2:
        raise ValueError(f"orthogonalize needs a matrix, got shape {tuple(G.shape)}")
    a, b, c = NS_COEFFICIENTS
    X = G.to(dtype)
    wide = X.size(0) <= X.size(1)
    if not wide:  # work with the short side: A = X X^T is then the smaller Gram matrix
        X = X.T
    X = X / X.norm().clamp(min=eps)  # Frobenius norm 1, so every singular value is <= 1
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return (X if wide else X.T).to(G.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters; give every other parameter (embeddings, norms, biases) to AdamW."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0,
                 nesterov: bool = True, ns_steps: int = 5, dtype: torch.dtype | None = None):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, ns_steps=ns_steps, dtype=dtype))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon updates matrices only; got a parameter of shape {tuple(p.shape)}. "
                                     "Give vectors, embeddings and the output layer to AdamW.")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            mu = group["momentum"]
            for W in group["params"]:
                if W.grad is None:
                    continue
                G = W.grad
                M = self.state[W].setdefault("momentum_buffer", torch.zeros_like(W))
                M.lerp_(G, 1 - mu)
                N = G.lerp(M, mu) if group["nesterov"] else M  # the look-ahead
                dtype = group["dtype"] or (torch.bfloat16 if W.is_cuda else torch.float32)
                O = orthogonalize(N, group["ns_steps"], dtype)
                W.mul_(1 - group["lr"] * group["weight_decay"])
                W.add_(O, alpha=-group["lr"] * math.sqrt(max(1.0, W.size(0) / W.size(1))))
        return loss
