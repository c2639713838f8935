"""The reasoning chapter's checked exercises: GRPO's group-relative advantages, the unbiased pass@k."""
import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.training.rl import group_advantages as _group_advantages, pass_at_k as _pass_at_k


@exercise(reference=_group_advantages)
def group_advantages(g):
    """(rewards, group_size): rewards of consecutive groups of responses, one group per prompt."""
    yield torch.tensor([1.0, 0.0, 0.0, 1.0]), 4
    yield torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0]), 3  # a group of equal rewards: advantage 0
    yield torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]), 4
    for n_groups, size in [(3, 4), (2, 8)]:
        yield torch.randint(0, 2, (n_groups * size,), generator=g).float(), size
    yield torch.rand(12, generator=g), 6  # graded rewards, not only 0/1


@group_advantages.mistake("the baseline is each prompt's own group mean: you subtracted the mean of the "
                          "whole batch")
def _(rewards, group_size):
    r = rewards.view(-1, group_size)
    return ((r - rewards.mean()) / (r.std(dim=1, keepdim=True) + 1e-4)).view(-1)


@group_advantages.mistake("GRPO divides by the group's standard deviation (+ 1e-4): you only centred the "
                          "rewards")
def _(rewards, group_size):
    r = rewards.view(-1, group_size)
    return (r - r.mean(dim=1, keepdim=True)).view(-1)


@group_advantages.mistake("the standard deviation is the sample one, with n - 1 (torch.std's default, as trl "
                          "computes it): you used unbiased=False")
def _(rewards, group_size):
    r = rewards.view(-1, group_size)
    return ((r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True, unbiased=False) + 1e-4)).view(-1)


@group_advantages.mistake("the groups are consecutive responses (view(-1, group_size)): you grouped every "
                          "group_size-th one (view(group_size, -1))")
def _(rewards, group_size):
    r = rewards.view(group_size, -1)
    return ((r - r.mean(dim=0, keepdim=True)) / (r.std(dim=0, keepdim=True) + 1e-4)).view(-1)


@exercise(reference=_pass_at_k)
def pass_at_k(g):
    """(n, c, k): n samples of which c are correct; the chance that k of them include a correct one."""
    yield 10, 0, 1
    yield 10, 10, 3
    yield 5, 1, 1
    yield 10, 3, 2
    yield 4, 2, 3  # fewer wrong samples than k: certain
    for n, c, k in [(20, 5, 4), (16, 1, 16), (100, 7, 10), (200, 13, 50)]:
        yield n, c, k


@pass_at_k.mistake("1 - (1 - c/n)^k samples with replacement and is biased low: pass@k draws k of the n "
                   "samples without replacement, 1 - C(n-c, k) / C(n, k)")
def _(n, c, k):
    return 1.0 - (1.0 - c / n) ** k


@pass_at_k.mistake("that is the chance that all k samples are correct, C(c, k) / C(n, k); pass@k asks for at "
                   "least one, 1 - C(n-c, k) / C(n, k)")
def _(n, c, k):
    from math import comb
    return comb(c, k) / comb(n, k)


@pass_at_k.mistake("C(n-c, k) / C(n, k) is the chance that none of the k is correct: pass@k is one minus it")
def _(n, c, k):
    from math import comb
    return comb(n - c, k) / comb(n, k)
