"""The text-conditioned denoiser: cross-attention against F.scaled_dot_product_attention and
diffusers' Attention, guidance with the empty prompt, errors, and a tiny training run."""
import pytest
import torch
import torch.nn.functional as F

from aigc_lib.data.captions import WordTokenizer
from aigc_lib.models.clip import CLIPConfig
from aigc_lib.models.text_unet import CrossAttention, TextDiffusion, TextUNet, TextUNetConfig
from aigc_lib.models.unet import UNetConfig
from aigc_lib.training.diffusion import train_diffusion
from aigc_lib.zoo import text2image


def _cross(seed=0):
    torch.manual_seed(seed)
    attn = CrossAttention(query_dim=24, context_dim=16, heads=3, dim_head=8)
    x, ctx = torch.randn(2, 49, 24), torch.randn(2, 6, 16)
    return attn, x, ctx


def test_cross_attention_equals_sdpa_with_separate_sources():
    attn, x, ctx = _cross()
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    split = lambda z: z.view(2, -1, 3, 8).transpose(1, 2)
    q, k, v = split(attn.to_q(x)), split(attn.to_k(ctx)), split(attn.to_v(ctx))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    ref = attn.to_out(ref.transpose(1, 2).reshape(2, 49, 24))
    torch.testing.assert_close(attn(x, ctx, mask), ref, rtol=0, atol=1e-5)
    attn.record = True  # the written-out attention gives the same output, and the maps
    torch.testing.assert_close(attn(x, ctx, mask), ref, rtol=0, atol=1e-5)
    assert attn.weights.shape == (2, 3, 49, 6)
    torch.testing.assert_close(attn.weights.sum(-1), torch.ones(2, 3, 49))
    assert attn.weights[1, :, :, 3:].abs().max() == 0  # padding is never attended to


def test_cross_attention_equals_diffusers_attention():
    from diffusers.models.attention_processor import Attention

    attn, x, ctx = _cross(1)
    ref = Attention(query_dim=24, cross_attention_dim=16, heads=3, dim_head=8)
    ref.to_q.weight.data.copy_(attn.to_q.weight)
    ref.to_k.weight.data.copy_(attn.to_k.weight)
    ref.to_v.weight.data.copy_(attn.to_v.weight)
    ref.to_out[0].weight.data.copy_(attn.to_out.weight)
    ref.to_out[0].bias.data.copy_(attn.to_out.bias)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, ctx), ref(x, encoder_hidden_states=ctx), rtol=0, atol=1e-5)


def _tiny(tok):
    text = CLIPConfig(vocab_size=tok.vocab_size, d_text=16, n_layer=1, n_head=2)
    config = TextUNetConfig(unet=UNetConfig(channels=16, patch=2, mult=(1, 2), attn_levels=()),
                            text=text, cross_levels=(1,))
    torch.manual_seed(0)
    return TextDiffusion(TextUNet(config), tok(""), T=100)


def test_text_unet_guidance_and_errors():
    tok = WordTokenizer()
    model = _tiny(tok).eval()
    ids = tok(["seven", "a thin two"])
    x = model.sample(2, steps=2, y=ids, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    xt = torch.randn(2, 1, 28, 28)
    eps_c, eps_u = model.eps(xt, 50, ids, 1.0), model.eps(xt, 50, None, 1.0)
    torch.testing.assert_close(model.eps(xt, 50, ids, 0.0), eps_u)      # w = 0: the empty prompt
    torch.testing.assert_close(model.eps(xt, 50, ids, 3.0), eps_u + 3 * (eps_c - eps_u), rtol=1e-5, atol=1e-5)
    for m in model.net.cross_attentions:
        m.record = True
    model.eps(xt, 50, ids, 1.0)
    assert model.net.cross_attentions[0].weights.shape == (2, 4, 49, tok.max_len)
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        model.sample(2, steps=2, y=ids, guidance=-1.0)
    with pytest.raises(ValueError, match="token ids"):
        model.net(xt, torch.zeros(2, dtype=torch.long), None)
    assert not any(p.requires_grad for p in model.net.text.parameters())  # frozen text encoder


def test_guidance_rescale_equals_diffusers():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    tok = WordTokenizer()
    model = _tiny(tok).eval()
    model.prediction = "v"  # rescaling acts on the network's output, v here as in SD 2's pipelines
    xt, ids, t = torch.randn(2, 1, 28, 28), tok(["seven", "a thin two"]), 50
    tt = torch.full((2,), t)
    with torch.no_grad():
        out_c, out_u = model.net(xt, tt, ids), model.net(xt, tt, tok(["", ""]))
        ref = rescale_noise_cfg(out_u + 3 * (out_c - out_u), out_c, guidance_rescale=0.7)
        model.guidance_rescale = 0.7
        ab = model.schedule.alpha_bar[t]
        torch.testing.assert_close(model.eps(xt, t, ids, 3.0), (1 - ab).sqrt() * xt + ab.sqrt() * ref,
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="guidance_rescale"):
        TextDiffusion(model.net, tok(""), T=100, guidance_rescale=1.5)


def test_generate_overrides_the_rescale_for_one_call_only():
    tok = WordTokenizer()
    model = _tiny(tok).eval()
    model.guidance_rescale = 0.7
    plain = text2image.generate(model, tok, ["seven", "two"], guidance=3.0, steps=2, guidance_rescale=0.0)
    assert model.guidance_rescale == 0.7  # restored
    model.guidance_rescale = 0.0
    torch.testing.assert_close(plain, text2image.generate(model, tok, ["seven", "two"], guidance=3.0, steps=2))
    with pytest.raises(ValueError, match="guidance_rescale"):
        text2image.generate(model, tok, ["seven"], steps=2, guidance_rescale=2.0)
    assert model.guidance_rescale == 0.0


def test_tiny_text_diffusion_training_lowers_the_loss():
    tok = WordTokenizer()
    model = _tiny(tok)
    before = model.net.text.tok.weight.clone()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1
    ids = tok(["seven", "three"] * 32)
    h = train_diffusion(model, x, ids, steps=30, batch_size=16, lr=3e-3, p_uncond=0.2, progress=False)
    assert sum(h["loss"][-5:]) / 5 < sum(h["loss"][:5]) / 5
    assert torch.equal(model.net.text.tok.weight, before)


def test_recipes_smoke_sizes_and_keys():
    r = text2image.TextToImage()
    assert r.net.text == r.clip.model and r.net.unet.n_classes == 0
    assert r.replace(steps=3).train.steps == 3 and r.replace(steps=3).clip == r.clip
    assert set(text2image.TextToImage.smoke_settings) <= {"steps", "batch_size", "eval_n", "sweep_n", "captions_per_image"}


def test_cross_attention_maps_are_distributions_over_tokens():
    tok = WordTokenizer()
    model = _tiny(tok).eval()
    ids = tok(["a thick seven", "two"])
    maps = model.cross_attention_maps(torch.zeros(2, 1, 28, 28), ids, 50, torch.Generator().manual_seed(0))
    assert maps.shape == (2, tok.max_len, 7, 7)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 7, 7))
    assert maps[1, 4:].abs().max() == 0  # "[BOS] two [EOS]": the padding gets nothing
    assert all(not m.record and m.weights is None for m in model.net.cross_attentions)
