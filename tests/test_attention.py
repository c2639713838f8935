"""Written-out attention vs PyTorch's fused kernel, masks, heads, positions, the toy task."""
import math

import pytest
import torch
from torch.nn import functional as F

import aigc_lib.data
from aigc_lib.data.toy import reversal_task
from aigc_lib.metrics.toy import sequence_accuracy
from aigc_lib.models.attention import (LearnedPositions, MultiHeadAttention, causal_mask, padding_mask,
                                       scaled_dot_product_attention, sinusoidal_positions)
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.training.supervised import train_sequence_task


@pytest.mark.parametrize("T", [1, 5, 17])
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_sdpa(T, heads, causal):
    g = torch.Generator().manual_seed(T * 10 + heads)
    q, k, v = (torch.randn(2, heads, T, 8, generator=g) for _ in range(3))
    ours = scaled_dot_product_attention(q, k, v, is_causal=causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_masks_match_sdpa_and_hide_keys():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 4, generator=g) for _ in range(3))
    mask = padding_mask(torch.tensor([6, 3, 1]), 6)
    out, w = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=0)
    assert w[1, :, :, 3:].abs().max() == 0 and w[2, :, :, 1:].abs().max() == 0  # padded keys get no weight
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 6))  # softmax over the keys j
    additive = torch.zeros(6, 6).masked_fill(~causal_mask(6), float("-inf"))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, additive),
                               scaled_dot_product_attention(q, k, v, is_causal=True))


def test_weights_closed_form():
    # one query, two keys: weights = softmax([q.k1, q.k2] / sqrt(d))
    q = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    k = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]])
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    p = math.exp(1.0) / (math.exp(1.0) + 1.0)  # scores 2/2 = 1 and 0
    torch.testing.assert_close(w[0, 0], torch.tensor([p, 1 - p]))
    torch.testing.assert_close(out[0, 0], torch.tensor([p, 1 - p]))


def test_multihead_fast_equals_written_out_and_is_causal():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, causal=True)
    x = torch.randn(2, 7, 16)
    slow = mha(x)
    assert mha.weights.shape == (2, 4, 7, 7) and mha.weights.triu(1).abs().max() == 0
    torch.testing.assert_close(mha(x, fast=True), slow, atol=1e-5, rtol=0)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 3, 16)  # change the future
    torch.testing.assert_close(mha(x2)[:, :4], slow[:, :4])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="d_k"):
        scaled_dot_product_attention(torch.randn(1, 3, 4), torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="lengths"):
        padding_mask(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(4, 5)
    with pytest.raises(ValueError, match="positions"):
        LearnedPositions(4, 8)(5)


def test_sinusoidal_positions():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 8))  # sin 0, cos 0
    torch.testing.assert_close(pe[:, 0], torch.sin(torch.arange(50.0)))  # fastest clock: 1 rad / step
    # a fixed offset is a rotation of each (sin, cos) pair: |PE[t]| is constant
    torch.testing.assert_close(pe.norm(dim=1), torch.full((50,), math.sqrt(8)))


def test_reversal_task_layout():
    idx, targets = reversal_task(4, length=5, n_symbols=7, generator=torch.Generator().manual_seed(0))
    assert idx.shape == targets.shape == (4, 10)
    assert (idx[:, 5] == 7).all()  # SEP
    assert (targets[:, :5] == -1).all()
    assert torch.equal(targets[:, 5:], idx[:, :5].flip(1))
    assert aigc_lib.data.reversal_task is reversal_task  # also exported by the data package


def _tiny_reversal_run(steps):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=5, n_layer=2, n_head=2, n_embd=32))
    data = lambda n, g: reversal_task(n, length=4, n_symbols=4, generator=g)  # noqa: E731
    test = reversal_task(500, length=4, n_symbols=4, generator=torch.Generator().manual_seed(1))
    before = sequence_accuracy(model, *test)[1]
    history = train_sequence_task(model, data, steps=steps, lr=3e-3, generator=torch.Generator().manual_seed(0),
                                  progress=False)
    return before, sequence_accuracy(model, *test)[1], history["loss"]


def test_tiny_training_improves():
    _, _, loss = _tiny_reversal_run(30)
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5


@pytest.mark.slow
def test_training_learns_reversal():
    before, after, _ = _tiny_reversal_run(150)
    assert after > 0.9 > before
