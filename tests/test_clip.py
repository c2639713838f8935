"""The small CLIP: the symmetric InfoNCE loss against transformers and a hand computation, shapes,
errors, and a tiny training run that lowers the loss."""
import math

import pytest
import torch

from aigc_lib.data import load_mnist
from aigc_lib.data.captions import AttributeThresholds, WordTokenizer
from aigc_lib.models.clip import CLIP, CLIPConfig, clip_loss, clip_score, retrieval_accuracy
from aigc_lib.training.clip import train_clip


def _reference_loss():
    try:
        from transformers.models.clip.modeling_clip import image_text_contrastive_loss as ref
    except ImportError:
        try:
            from transformers.models.clip.modeling_clip import clip_loss as ref
        except ImportError:
            return None
    return ref


def test_clip_loss_equals_hand_computation_and_transformers():
    logits = torch.randn(7, 7, generator=torch.Generator().manual_seed(0)) * 3
    p_rows, p_cols = logits.softmax(1), logits.softmax(0)
    hand = -(p_rows.diagonal().log().mean() + p_cols.diagonal().log().mean()) / 2
    torch.testing.assert_close(clip_loss(logits), hand, rtol=0, atol=1e-6)
    ref = _reference_loss()
    if ref is not None:  # transformers' similarity is text x image; the loss is symmetric either way
        torch.testing.assert_close(clip_loss(logits), ref(logits.T), rtol=0, atol=1e-6)
    assert clip_loss(torch.eye(4) * 100) < 1e-6
    assert clip_loss(torch.zeros(5, 5)).item() == pytest.approx(math.log(5))
    with pytest.raises(ValueError, match="square"):
        clip_loss(torch.zeros(3, 4))


def test_clip_shapes_scores_and_errors():
    tok = WordTokenizer()
    model = CLIP(CLIPConfig(vocab_size=tok.vocab_size, d_text=16, n_layer=1, n_head=2, channels=4, d_embed=8))
    x, ids = torch.rand(3, 1, 28, 28), tok(["seven", "a thin two", ""])
    assert model(x, ids).shape == (3, 3)
    assert torch.allclose(model.embed_text(ids).norm(dim=-1), torch.ones(3))
    states, pooled = model.text(ids)
    assert states.shape == (3, tok.max_len, 16) and pooled.shape == (3, 16)
    s = clip_score(model, x, ids)
    assert s.shape == (3,) and (s >= 0).all() and (s <= 100).all()
    assert set(retrieval_accuracy(model, x, ids)) == {"text_to_image", "image_to_text"}
    with pytest.raises(ValueError, match="token ids"):
        model.text(ids[:, :5])
    with pytest.raises(ValueError, match="EOS"):
        model.text(torch.ones(1, tok.max_len, dtype=torch.long))
    with pytest.raises(ValueError, match="28"):
        model.embed_images(torch.rand(2, 1, 14, 14))


def test_tiny_clip_training_lowers_the_loss():
    """From chance (log N for a batch of N) to well below it: the encoders learn to match pairs."""
    x, y = load_mnist("train")
    x, y = x[::10], y[::10]
    tok = WordTokenizer()
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(vocab_size=tok.vocab_size))
    attrs = AttributeThresholds.fit(x, y).label(x, y)
    h = train_clip(model, x, y, attrs, tok, steps=120, batch_size=128, lr=3e-3, progress=False)
    assert sum(h["loss"][-5:]) / 5 < math.log(128) - 0.5, h["loss"][::10]
