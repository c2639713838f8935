"""The memory arithmetic of a decoder-only LLM: parameters, weights at a given precision, KV cache.

For a configuration with ``V`` tokens, width ``d``, ``L`` layers, ``H`` query heads and ``K``
key/value heads of ``h`` dimensions, an MLP of width ``I`` (or ``E`` experts of width ``I_e``, ``k``
active):

* parameters per layer: attention ``d H h + 2 d K h + H h d``, SwiGLU MLP ``3 d I`` (MoE: router
  ``d E`` and ``E`` experts of ``3 d I_e``; a token uses ``k`` of them), two norms; plus the token
  embedding ``V d``, an output layer ``V d`` unless tied, the final norm;
* weights in memory: parameters x bytes per value (bf16 2, int8 1, int4 0.5; quantised formats
  add a few percent for their scales, not counted here);
* KV cache: ``2 L K h`` values per token (a key and a value per layer and KV head), times the
  context ``T`` and the batch ``B``: ``2 L K h T B`` x bytes per value. Grouped-query attention
  divides it by ``H / K``.

``PUBLISHED`` holds the architectures of real models, typed in from their published configurations
(each entry names its source; nothing is downloaded).
"""
from __future__ import annotations

from aigc_lib.models.gpt import GPTConfig, LLMConfig

BYTES = {"fp32": 4, "bf16": 2, "int8": 1, "int4": 0.5}


def param_counts(cfg: GPTConfig) -> dict[str, int]:
    """``{"total", "active", "embedding"}`` parameter counts of the book's GPT built with ``cfg``.

    ``active`` counts what one token uses (``k`` of the ``E`` experts); ``embedding`` the token
    embedding and, if untied, the output layer. Equal to ``GPT(cfg).num_params()`` (the tests check).
    """
    d, L, V, H, K, h = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.n_head, cfg.kv_heads, cfg.head_size
    bias = 1 if cfg.bias else 0
    norm = d * (2 if cfg.norm == "layernorm" and cfg.bias else 1)  # LayerNorm also has a bias
    attn = d * (H + 2 * K) * h + bias * (H + 2 * K) * h + H * h * d + bias * d
    attn += 2 * h if cfg.qk_norm_weight else 0
    if cfg.mlp == "swiglu":
        width = cfg.mlp_hidden or 8 * ((8 * d // 3 + 7) // 8)
        mlp = 3 * d * width + bias * (2 * width + d)
    else:
        width = cfg.mlp_hidden or 4 * d
        mlp = 2 * d * width + bias * (width + d)
    expert = 0
    if cfg.n_expert:
        width = cfg.expert_hidden or cfg.mlp_hidden or 4 * d
        expert = 3 * d * width + bias * (2 * width + d)
        mlp = d * cfg.n_expert + cfg.n_expert * expert
    embedding = V * d * (1 if cfg.tie_embeddings else 2)
    positions = 0 if cfg.rope else cfg.block_size * d
    total = embedding + positions + L * (attn + mlp + 2 * norm) + norm
    active = total - (L * (cfg.n_expert - cfg.n_expert_active) * expert if cfg.n_expert else 0)
    return {"total": total, "active": active, "embedding": embedding}


def kv_cache_bytes(cfg: GPTConfig, context: int, batch: int = 1, bytes_per_value: float = 2) -> float:
    """Bytes of the KV cache for ``batch`` sequences of ``context`` tokens: ``2 L K h T B`` values."""
    if context < 1 or batch < 1:
        raise ValueError(f"context and batch must be >= 1, got {context} and {batch}")
    return 2 * cfg.n_layer * cfg.kv_heads * cfg.head_size * context * batch * bytes_per_value


def memory_row(cfg: GPTConfig, context: int = 8192, batch: int = 1) -> dict[str, float]:
    """One row of the memory table, in billions of parameters and GB (1e9 bytes)."""
    n = param_counts(cfg)
    return {"params_B": n["total"] / 1e9, "active_B": n["active"] / 1e9,
            **{f"{p}_GB": n["total"] * BYTES[p] / 1e9 for p in ("bf16", "int8", "int4")},
            "kv_KiB_per_token": kv_cache_bytes(cfg, 1) / 1024,
            "kv_GB": kv_cache_bytes(cfg, context, batch) / 1e9}


LLAMA31_ROPE = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)


def _swiglu(**kw) -> LLMConfig:
    base = dict(rope=True, mlp="swiglu", norm="rmsnorm", bias=False, dropout=0.0)
    return LLMConfig(**{**base, **kw})


# Published configurations (the models' config.json on the Hugging Face hub, which the reports'
# architecture tables agree with): Llama 3.1 and 3.2 (Grattafiori et al. 2024), Qwen3 (Yang et al.
# 2025), Mixtral 8x7B (Jiang et al. 2024), GPT-2 small (Radford et al. 2019).
PUBLISHED: dict[str, LLMConfig] = {
    "GPT-2 small": LLMConfig(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768),
    "Llama 3.2 1B": _swiglu(block_size=131072, vocab_size=128256, n_layer=16, n_head=32, n_kv_head=8,
                            n_embd=2048, mlp_hidden=8192, tie_embeddings=True, rope_theta=500000.0,
                            rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=8192)),
    "Llama 3.1 8B": _swiglu(block_size=131072, vocab_size=128256, n_layer=32, n_head=32, n_kv_head=8,
                            n_embd=4096, mlp_hidden=14336, tie_embeddings=False, rope_theta=500000.0,
                            rope_scaling=LLAMA31_ROPE),
    "Llama 3.1 70B": _swiglu(block_size=131072, vocab_size=128256, n_layer=80, n_head=64, n_kv_head=8,
                             n_embd=8192, mlp_hidden=28672, tie_embeddings=False, rope_theta=500000.0,
                             rope_scaling=LLAMA31_ROPE),
    "Qwen3 0.6B": _swiglu(block_size=40960, vocab_size=151936, n_layer=28, n_head=16, n_kv_head=8, head_dim=128,
                          n_embd=1024, mlp_hidden=3072, tie_embeddings=True, rope_theta=1e6, norm_eps=1e-6,
                          qk_norm=True, qk_norm_weight=True),
    "Qwen3 8B": _swiglu(block_size=40960, vocab_size=151936, n_layer=36, n_head=32, n_kv_head=8, head_dim=128,
                        n_embd=4096, mlp_hidden=12288, tie_embeddings=False, rope_theta=1e6, norm_eps=1e-6,
                        qk_norm=True, qk_norm_weight=True),
    "Qwen3 30B-A3B": _swiglu(block_size=40960, vocab_size=151936, n_layer=48, n_head=32, n_kv_head=4, head_dim=128,
                             n_embd=2048, n_expert=128, n_expert_active=8, expert_hidden=768,
                             tie_embeddings=False, rope_theta=1e6, norm_eps=1e-6, qk_norm=True,
                             qk_norm_weight=True),
    "Mixtral 8x7B": _swiglu(block_size=32768, vocab_size=32000, n_layer=32, n_head=32, n_kv_head=8,
                            n_embd=4096, n_expert=8, n_expert_active=2, expert_hidden=14336,
                            tie_embeddings=False, rope_theta=1e6),
}
"""Architectures of real models, keyed by name (the sources are in the comment above)."""

# Parameter counts the model cards and reports state, in billions, to check the arithmetic against.
STATED_PARAMS_B = {"GPT-2 small": 0.124, "Llama 3.2 1B": 1.24, "Llama 3.1 8B": 8.03, "Llama 3.1 70B": 70.6,
                   "Qwen3 0.6B": 0.6, "Qwen3 8B": 8.2, "Qwen3 30B-A3B": 30.5, "Mixtral 8x7B": 46.7}
STATED_ACTIVE_B = {"Qwen3 30B-A3B": 3.3, "Mixtral 8x7B": 12.9}
