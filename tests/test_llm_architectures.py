"""The LLM-architectures chapter's pieces: RMSNorm, grouped-query attention, RoPE base and Llama 3
scaling, sliding window, mixture of experts; and the book's GPT against transformers' Llama, Qwen3
and Qwen3-MoE with the same random weights (written by save_pretrained, read back by our loaders)."""
import json
import math

import pytest
import torch

from aigc_lib.models.gpt import (GPT, GPTConfig, LLMConfig, RMSNorm, attention_mask, rope_angles,
                                 rope_frequencies)
from aigc_lib.models.moe import MoE, load_balancing_loss
from aigc_lib.models.open_llms import config_from_hf, from_llama, from_qwen3, from_qwen3_moe
from aigc_lib.sampling import generate

transformers = pytest.importorskip("transformers")
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM,  # noqa: E402
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)

SMALL = dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=64, initializer_range=0.1)
LLAMA3_SCALING = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      original_max_position_embeddings=16)


def saved(cls, config, folder, seed=0):
    """A transformers model with random weights, written to ``folder`` by save_pretrained."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.save_pretrained(folder)
    return model


def max_logit_diff(ours, theirs, T=24, seed=1):
    ids = torch.randint(0, ours.config.vocab_size, (2, T), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (ours(ids)[0] - theirs(input_ids=ids).logits).abs().max().item()


def check_greedy(ours, theirs, n=12):
    prompt = torch.randint(0, ours.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(3))
    ref = theirs.generate(prompt, max_new_tokens=n, do_sample=False, min_new_tokens=n,
                          pad_token_id=0, eos_token_id=None)
    out = generate(ours, prompt, n)
    assert out.tolist() == ref.tolist()


def llama_config(**kw):
    rope = kw.pop("rope_parameters", None)
    cfg = LlamaConfig(**{**SMALL, **kw})
    if rope is not None:
        cfg.rope_parameters = rope
    return cfg


@pytest.mark.parametrize("kw", [
    dict(num_key_value_heads=2),  # GQA 2:1, untied
    dict(num_key_value_heads=1, tie_word_embeddings=True, rope_parameters=dict(rope_type="default", rope_theta=500000.0)),
    dict(num_key_value_heads=4, rope_parameters=dict(rope_type="default", rope_theta=1000.0)),  # MHA
    dict(num_key_value_heads=2, rope_parameters=dict(rope_theta=500000.0, **LLAMA3_SCALING)),
])
def test_llama_logits_and_greedy_match_transformers(tmp_path, kw):
    theirs = saved(LlamaForCausalLM, llama_config(**kw), tmp_path)
    ours = from_llama(str(tmp_path))
    assert ours.config.kv_heads == theirs.config.num_key_value_heads
    assert ours.num_params() == sum(p.numel() for p in theirs.parameters())
    assert max_logit_diff(ours, theirs, T=48) <= 1e-4
    check_greedy(ours, theirs)


@pytest.mark.parametrize("kw", [
    dict(num_key_value_heads=2, head_dim=16),  # head_dim * heads = 64 != hidden 32, as in Qwen3
    dict(num_key_value_heads=1, head_dim=8, tie_word_embeddings=True),
    dict(num_key_value_heads=4, head_dim=8, rope_parameters=dict(rope_type="default", rope_theta=1e6)),
])
def test_qwen3_logits_and_greedy_match_transformers(tmp_path, kw):
    rope = kw.pop("rope_parameters", None)
    cfg = Qwen3Config(**{**SMALL, **kw})
    if rope is not None:
        cfg.rope_parameters = rope
    theirs = saved(Qwen3ForCausalLM, cfg, tmp_path)
    ours = from_qwen3(str(tmp_path))
    assert ours.config.qk_norm_weight and ours.config.head_size == kw["head_dim"]
    assert max_logit_diff(ours, theirs) <= 1e-4
    check_greedy(ours, theirs)


@pytest.mark.parametrize("norm_topk_prob", [True, False])
def test_qwen3_moe_logits_and_greedy_match_transformers(tmp_path, norm_topk_prob):
    cfg = Qwen3MoeConfig(**SMALL, num_key_value_heads=2, head_dim=8, num_experts=4, num_experts_per_tok=2,
                         moe_intermediate_size=16, norm_topk_prob=norm_topk_prob)
    theirs = saved(Qwen3MoeForCausalLM, cfg, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    ours = from_qwen3_moe(str(tmp_path))
    assert ours.config.n_expert == 4 and ours.config.norm_topk_prob == norm_topk_prob == written["norm_topk_prob"]
    assert max_logit_diff(ours, theirs) <= 1e-4
    check_greedy(ours, theirs)


def test_moe_loader_reads_the_fused_in_memory_layout_too():
    """transformers 5.x holds the experts as one E x 2I x H tensor; its state dict loads like the file."""
    from aigc_lib.models.open_llms import hf_state_to_gpt, load_into

    cfg = Qwen3MoeConfig(**SMALL, num_key_value_heads=2, head_dim=8, num_experts=4, num_experts_per_tok=2,
                         moe_intermediate_size=16)
    torch.manual_seed(0)
    theirs = Qwen3MoeForCausalLM(cfg).eval()
    state = theirs.state_dict()
    if "model.layers.0.mlp.experts.gate_up_proj" not in state:
        pytest.skip("this transformers version keeps the experts unfused in memory")
    config = config_from_hf(json.loads(cfg.to_json_string()))
    ours = load_into(GPT(config), hf_state_to_gpt(state, config)).eval()
    assert max_logit_diff(ours, theirs) <= 1e-4


@pytest.mark.slow
def test_qwen3_0_6b_shape_cut_to_two_layers(tmp_path):
    """Qwen3-0.6B's published config (hidden 1024, 16 query heads of 128, 8 KV heads, 151,936 tokens,
    tied embeddings, theta 1e6) with 2 of its 28 layers."""
    cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=2,
                      num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                      rms_norm_eps=1e-6, tie_word_embeddings=True)
    cfg.rope_parameters = dict(rope_type="default", rope_theta=1000000.0)
    theirs = saved(Qwen3ForCausalLM, cfg, tmp_path)
    ours = from_qwen3(str(tmp_path))
    assert ours.num_params() == sum(p.numel() for p in theirs.parameters())
    assert max_logit_diff(ours, theirs, T=16) <= 1e-4
    check_greedy(ours, theirs, n=6)


def test_rmsnorm_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16) * 3 + 1
    ours, ref = RMSNorm(16, eps=1e-6), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(16)); ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x))
    y = RMSNorm(16)(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(3, 5), rtol=1e-4, atol=1e-4)  # unit RMS


def test_gqa_with_as_many_kv_heads_as_heads_is_multi_head_attention():
    base = dict(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_embd=32, rope=True, bias=False)
    torch.manual_seed(0); mha = GPT(GPTConfig(**base)).eval()
    torch.manual_seed(0); gqa = GPT(LLMConfig(**base, n_kv_head=4)).eval()
    idx = torch.randint(0, 37, (2, 16))
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=0, atol=0)


def test_gqa_shares_each_kv_head_among_its_group():
    torch.manual_seed(0)
    model = GPT(LLMConfig(block_size=16, vocab_size=37, n_layer=1, n_head=4, n_embd=32, n_kv_head=2, rope=True)).eval()
    attn = model.transformer.h[0].attn
    assert attn.c_attn.weight.shape == ((4 + 2 * 2) * 8, 32)
    cache = model.new_cache()
    model(torch.randint(0, 37, (3, 10)), cache=cache)
    assert cache.k[0].shape == (3, 2, 10, 8)  # the cache holds the 2 KV heads, not 4


def kv_cache_bytes_formula(cfg, T, B, bytes_per=4):
    return 2 * cfg.n_layer * cfg.kv_heads * cfg.head_size * T * B * bytes_per


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_kv_cache_bytes_follow_the_formula(n_kv):
    from aigc_lib.models.llm_memory import kv_cache_bytes

    cfg = LLMConfig(block_size=32, vocab_size=37, n_layer=3, n_head=4, n_embd=32, n_kv_head=n_kv, rope=True)
    model = GPT(cfg).eval()
    cache = model.new_cache()
    model(torch.randint(0, 37, (2, 20)), cache=cache)
    measured = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    assert measured == kv_cache_bytes_formula(cfg, 20, 2) == kv_cache_bytes(cfg, 20, 2, bytes_per_value=4)


def test_sliding_window_mask_and_equivalence():
    m = attention_mask(3, 4, window=3)
    assert m.tolist() == [[False, False, True, True, True, False, False],
                          [False, False, False, True, True, True, False],
                          [False, False, False, False, True, True, True]]
    base = dict(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=16, rope=True)
    torch.manual_seed(0); full = GPT(LLMConfig(**base)).eval()
    torch.manual_seed(0); wide = GPT(LLMConfig(**base, sliding_window=16)).eval()
    torch.manual_seed(0); narrow = GPT(LLMConfig(**base, sliding_window=4)).eval()
    idx = torch.randint(0, 37, (2, 12))
    torch.testing.assert_close(wide(idx)[0], full(idx)[0])
    out = narrow(idx)[0]
    torch.testing.assert_close(out[:, :4], full(idx)[0][:, :4])  # the first window is unchanged
    changed = idx.clone(); changed[:, 0] = (changed[:, 0] + 1) % 37
    # with 2 layers, token 0 reaches at most position 0 + 2 * (4 - 1) = 6
    torch.testing.assert_close(narrow(changed)[0][:, 7:], out[:, 7:])
    cache = narrow.new_cache()
    steps = [narrow(idx[:, :5], cache=cache)[0]] + [narrow(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, 1), out, rtol=1e-4, atol=1e-5)


def test_rope_theta_and_llama3_scaling_match_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = llama_config(rope_parameters=dict(rope_theta=500000.0, **LLAMA3_SCALING), head_dim=64)
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    ours = rope_frequencies(64, 500000.0, LLAMA3_SCALING)
    torch.testing.assert_close(ours, ref)
    assert not torch.equal(ours, rope_frequencies(64, 500000.0))  # the scaling changed the low frequencies
    cos, _ = rope_angles(5, 8, base=100.0)
    assert cos.shape == (5, 8)
    with pytest.raises(ValueError, match="not implemented"):
        rope_frequencies(64, 1e4, dict(rope_type="yarn", factor=4.0))


def test_load_balancing_loss_formula():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(50, 6), -1)
    top_i = probs.topk(2, -1).indices
    f = torch.zeros(6)
    for row in top_i:
        for e in row:
            f[e] += 1 / 50
    expected = 6 * (f * probs.mean(0)).sum()
    torch.testing.assert_close(load_balancing_loss(probs, top_i, 6), expected)
    uniform = torch.full((60, 6), 1 / 6)  # a perfectly balanced router: the loss is k
    balanced = torch.arange(60).remainder(6)[:, None]
    assert load_balancing_loss(uniform, balanced, 6).item() == pytest.approx(1.0)
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func
    logits = torch.randn(40, 6)
    ref = load_balancing_loss_func((logits,), 6, 2)
    ours = load_balancing_loss(torch.softmax(logits, -1), torch.softmax(logits, -1).topk(2, -1).indices, 6)
    torch.testing.assert_close(ours, ref)


def test_moe_routes_each_token_to_k_experts_and_trains():
    torch.manual_seed(0)
    moe = MoE(16, 24, n_expert=4, k=2)
    x = torch.randn(2, 7, 16)
    y = moe(x)
    assert y.shape == x.shape and moe.load.sum().item() == 2 * 14
    # one token by hand
    p = torch.softmax(moe.router(x[0, 0]), -1)
    top_p, top_i = p.topk(2)
    top_p = top_p / top_p.sum()
    ref = sum(w * moe.experts[int(e)](x[0, 0]) for w, e in zip(top_p, top_i))
    torch.testing.assert_close(y[0, 0], ref, rtol=1e-5, atol=1e-6)
    cfg = LLMConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=16, rope=True, mlp="swiglu",
                    n_expert=4, expert_hidden=8, bias=False)
    model = GPT(cfg)
    idx = torch.randint(0, 37, (2, 16))
    model.train()
    _, loss_train = model(idx, idx)
    ce = model.eval()(idx, idx)[1]
    assert loss_train.item() == pytest.approx(ce.item() + 0.01 * model.aux_loss().item(), rel=1e-5)
    loss_train.backward()
    assert model.transformer.h[0].mlp.router.weight.grad.abs().sum() > 0


def test_configs_refuse_bad_settings():
    with pytest.raises(ValueError, match="divisible by n_kv_head"):
        LLMConfig(n_head=6, n_kv_head=4)
    with pytest.raises(ValueError, match="norm must be one of"):
        LLMConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="n_expert_active"):
        LLMConfig(mlp="swiglu", n_expert=4, n_expert_active=5)
    with pytest.raises(ValueError, match="SwiGLU"):
        LLMConfig(n_expert=4)
    with pytest.raises(ValueError, match="qk_norm=True"):
        LLMConfig(qk_norm_weight=True)
    assert LLMConfig(n_head=16, n_embd=1024, head_dim=128).head_size == 128  # need not be n_embd // n_head
    assert GPTConfig().is_gpt2 and LLMConfig().is_gpt2 and not LLMConfig(norm="rmsnorm").is_gpt2


def test_gpt2_stays_gpt2_and_its_settings_keep_their_keys():
    """GPTConfig gained no dataclass fields: the cache keys of every model trained before stay valid."""
    import dataclasses
    assert "norm" not in {f.name for f in dataclasses.fields(GPTConfig())}
    assert GPT(GPTConfig()).num_params() == 124_439_808


def test_loaders_refuse_the_wrong_family(tmp_path):
    llama_dir, qwen_dir, moe_dir = tmp_path / "llama", tmp_path / "qwen3", tmp_path / "moe"
    saved(LlamaForCausalLM, llama_config(num_key_value_heads=2), llama_dir)
    saved(Qwen3ForCausalLM, Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=8), qwen_dir)
    saved(Qwen3MoeForCausalLM, Qwen3MoeConfig(**SMALL, num_key_value_heads=2, head_dim=8, num_experts=2, moe_intermediate_size=8), moe_dir)
    with pytest.raises(ValueError, match="from_qwen3"):
        from_llama(str(qwen_dir))
    with pytest.raises(ValueError, match="from_llama"):
        from_qwen3(str(llama_dir))
    with pytest.raises(ValueError, match="from_qwen3_moe"):
        from_qwen3(str(moe_dir))
    with pytest.raises(ValueError, match="from_qwen3"):  # today's silent random GPT-2, fixed
        GPT.from_pretrained(str(qwen_dir))
    cfg = json.loads((qwen_dir / "config.json").read_text())
    (qwen_dir / "config.json").write_text(json.dumps({**cfg, "model_type": "mamba", "architectures": ["MambaForCausalLM"]}))
    with pytest.raises(ValueError, match="has loaders for"):
        from_qwen3(str(qwen_dir))


def test_loaders_refuse_wrong_shapes_and_keys(tmp_path):
    saved(Qwen3ForCausalLM, Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=8), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 40}))
    with pytest.raises(ValueError, match="shape"):
        from_qwen3(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="missing"):
        from_qwen3(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}))
    with pytest.raises(ValueError, match="yarn"):
        from_qwen3(str(tmp_path))
    with pytest.raises(ValueError, match="neither a folder"):
        from_qwen3("no-such-folder")


def test_bad_inputs_to_the_model_say_what_is_wrong():
    model = GPT(LLMConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, n_kv_head=1, rope=True))
    with pytest.raises(ValueError, match="B x T"):
        model(torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((1, 3), 11))


@pytest.mark.parametrize("cfg", [
    GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24),  # GPT-2 shape
    GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, rope=True, mlp="relu2", qk_norm=True,
              bias=False, tie_embeddings=False),  # the modern recipe
    LLMConfig(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_embd=32, n_kv_head=2, head_dim=16, rope=True,
              mlp="swiglu", mlp_hidden=40, norm="rmsnorm", bias=False, qk_norm=True, qk_norm_weight=True),
    LLMConfig(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_embd=32, n_kv_head=1, rope=True, mlp="swiglu",
              norm="rmsnorm", bias=False, n_expert=4, n_expert_active=2, expert_hidden=8, tie_embeddings=False),
])
def test_param_count_formula_matches_the_model(cfg):
    from aigc_lib.models.llm_memory import param_counts

    model = GPT(cfg)
    n = param_counts(cfg)
    assert n["total"] == model.num_params()
    if cfg.n_expert:
        one_expert = sum(p.numel() for p in model.transformer.h[0].mlp.experts[0].parameters())
        assert n["total"] - n["active"] == cfg.n_layer * (cfg.n_expert - cfg.n_expert_active) * one_expert


def test_published_configs_have_their_stated_sizes():
    from aigc_lib.models.llm_memory import PUBLISHED, STATED_ACTIVE_B, STATED_PARAMS_B, memory_row, param_counts

    for name, cfg in PUBLISHED.items():
        n = param_counts(cfg)
        assert abs(n["total"] / 1e9 / STATED_PARAMS_B[name] - 1) < 0.02, name
        if name in STATED_ACTIVE_B:
            assert abs(n["active"] / 1e9 / STATED_ACTIVE_B[name] - 1) < 0.02, name
    row = memory_row(PUBLISHED["Llama 3.1 8B"], context=8192)
    assert row["kv_KiB_per_token"] == 2 * 32 * 8 * 128 * 2 / 1024  # 128 KiB: 4x less than 32 KV heads
    assert row["int4_GB"] == row["bf16_GB"] / 4
    with pytest.raises(ValueError, match="context"):
        memory_row(PUBLISHED["Qwen3 0.6B"], context=0)


def test_exercise_references_match_the_package():
    from transformers.models.llama.modeling_llama import repeat_kv

    from aigc_lib.exercises.llm_architectures import _grouped_query_attention, _rms_norm

    torch.manual_seed(0)
    x, norm = torch.randn(3, 16), RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    torch.testing.assert_close(_rms_norm(x, norm.weight, 1e-6), norm(x))
    q, k, v = torch.randn(2, 8, 5, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    ref = torch.nn.functional.scaled_dot_product_attention(q, repeat_kv(k, 4), repeat_kv(v, 4), is_causal=True)
    torch.testing.assert_close(_grouped_query_attention(q, k, v), ref)


def test_gpt2_from_pretrained_refuses_a_qwen3_model_object():
    torch.manual_seed(0)
    qwen = Qwen3ForCausalLM(Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=8))
    with pytest.raises(ValueError, match="from_qwen3"):
        GPT.from_pretrained(qwen)
