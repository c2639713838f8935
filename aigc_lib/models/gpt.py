"""The book's GPT: a decoder-only Transformer in the style of nanoGPT's ``model.py``.

One file, four modules that read top to bottom:

* :class:`CausalSelfAttention`: ``softmax(q k^T / sqrt(d_k) + causal mask) v`` over ``n_head`` heads,
  computed by ``F.scaled_dot_product_attention`` (the written-out version is
  :func:`aigc_lib.models.attention.scaled_dot_product_attention`, and the tests check they agree);
* :class:`MLP`: ``FFN(x) = W2 GELU(W1 x + b1) + b2`` with a 4x wider hidden layer;
* :class:`Block`: pre-LayerNorm residual block, ``x = x + Attn(LN(x)); x = x + FFN(LN(x))``;
* :class:`GPT`: token + learned position embeddings, ``n_layer`` blocks, a final LayerNorm and an
  output layer that shares its weight with the token embedding (weight tying).

Four switches in :class:`GPTConfig`, all off by default, replace pieces of GPT-2 with what
small-model speed-runs use today: rotary position
embeddings (``rope``), a squared-ReLU or SwiGLU MLP (``mlp``), RMS-normalised queries and keys
(``qk_norm``) and an output layer with its own weights (``tie_embeddings=False``).

:class:`LLMConfig` adds the switches of today's open models (the LLM-architectures chapter):
RMSNorm (``norm``), grouped-query attention (``n_kv_head``), a head size that need not be
``n_embd // n_head`` (``head_dim``), RoPE's base and Llama 3's long-context scaling, a sliding
window, learned QK-norm gains (Qwen3) and a mixture of experts in place of the MLP
(:mod:`aigc_lib.models.moe`). GPT-2, the pretraining chapter's modern recipe, Llama and Qwen3 are
configurations of this one model; :mod:`aigc_lib.models.open_llms` loads their weights.

With ``GPTConfig()`` (the defaults) it is GPT-2 small: 124,439,808 parameters, exactly like
``transformers.GPT2LMHeadModel``, and :meth:`GPT.from_pretrained` fills it with GPT-2's weights.
A :class:`KVCache` lets generation feed one new token per step instead of re-running the prefix;
to continue a text, call ``aigc_lib.sampling.generate(model, idx, ...)``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from aigc_lib.config import reachable
from aigc_lib.models.attention import scaled_dot_product_attention
from aigc_lib.models.moe import MoE

# Sizes of the GPT-2 family (Radford et al. 2019), as in the Hugging Face hub configs.
GPT2_SIZES = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 355M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
}
MLP_KINDS = ("gelu", "relu2", "swiglu")  # the nonlinearities :class:`MLP` offers
NORM_KINDS = ("layernorm", "rmsnorm")  # the normalisations :class:`Block` offers
# Which function loads a Hugging Face folder of each model_type into the book's GPT.
HF_LOADERS = {"gpt2": "aigc_lib.models.gpt.GPT.from_pretrained",
              "llama": "aigc_lib.models.open_llms.from_llama",
              "qwen3": "aigc_lib.models.open_llms.from_qwen3",
              "qwen3_moe": "aigc_lib.models.open_llms.from_qwen3_moe"}


def check_hf_family(folder: str, family: str) -> dict:
    """The folder's ``config.json``, after checking that it holds a ``family`` model.

    A folder of another kind raises a ``ValueError`` that names the loader for it: loading it as
    ``family`` would leave most weights random behind a model that only looks loaded.
    """
    import json

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"{folder!r} has no config.json: give a folder written by save_pretrained")
    with open(path) as f:
        cfg = json.load(f)
    found, archs = cfg.get("model_type"), cfg.get("architectures") or []
    if found != family:
        right = HF_LOADERS.get(found)
        hint = (f"load it with {right}" if right else
                f"the book has loaders for {', '.join(HF_LOADERS)} only")
        raise ValueError(f"{folder!r} holds a {found!r} model ({', '.join(archs) or 'no architectures'}), "
                         f"not {family!r}: {hint}")
    return cfg


@dataclass
class GPTConfig:
    block_size: int = 1024  # context window: the longest sequence the model reads
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    # Modern switches (the pretraining chapter's modern recipe); the defaults are GPT-2's.
    rope: bool = False  # rotary position embeddings (Su et al. 2021) instead of learned ones
    mlp: str = "gelu"  # "gelu" (GPT-2), "relu2" (squared ReLU) or "swiglu" (Shazeer 2020)
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before the dot product
    tie_embeddings: bool = True  # the output layer shares the token embedding's weight

    # The switches of LLMConfig, with the values that keep a model GPT-2 (or the modern recipe).
    # They are plain class attributes here, not dataclass fields: a GPTConfig's settings, and so
    # the cache keys of every model trained with one, stay what they were before they existed.
    norm = "layernorm"
    norm_eps = 1e-5
    n_kv_head = None
    head_dim = None
    mlp_hidden = None
    rope_theta = 10000.0
    rope_scaling = None
    sliding_window = None
    qk_norm_weight = False
    n_expert = 0
    n_expert_active = 2
    expert_hidden = None
    norm_topk_prob = True
    router_aux_loss_coef = 0.01

    @property
    def kv_heads(self) -> int:
        """Heads of keys and values: ``n_kv_head``, or ``n_head`` (multi-head attention)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_size(self) -> int:
        """Dimensions per head: ``head_dim``, or ``n_embd // n_head`` (GPT-2, Llama)."""
        return self.n_embd // self.n_head if self.head_dim is None else self.head_dim

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.head_dim is None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                             "(each head gets n_embd // n_head dimensions)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {', '.join(MLP_KINDS)}, got {self.mlp!r}")
        if self.rope and self.head_size % 2:
            raise ValueError(f"rope rotates pairs of dimensions: the head size "
                             f"{self.head_size} must be even")

    @property
    def is_gpt2(self) -> bool:
        """True when every modern switch is off: the architecture of GPT-2."""
        return (not self.rope and self.mlp == "gelu" and not self.qk_norm and self.tie_embeddings
                and self.norm == "layernorm" and self.kv_heads == self.n_head and self.head_dim is None
                and self.mlp_hidden is None and self.sliding_window is None and not self.n_expert)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class LLMConfig(GPTConfig):
    """:class:`GPTConfig` plus the pieces of today's open LLMs (Llama 3, Qwen3, Mistral, Mixtral).

    Every default keeps the model what the GPTConfig fields make it (GPT-2 or the modern recipe):

    * ``norm="rmsnorm"``: ``x / sqrt(mean(x^2) + eps) * g`` instead of LayerNorm (Zhang & Sennrich 2019);
    * ``n_kv_head``: grouped-query attention (Ainslie et al. 2023): ``n_head / n_kv_head`` query
      heads share each key/value head, so the KV cache shrinks by that factor; 1 is multi-query
      attention (Shazeer 2019);
    * ``head_dim``: dimensions per head when it is not ``n_embd // n_head`` (Qwen3: 16 heads of 128
      in a 1,024-wide model);
    * ``mlp_hidden``: the MLP's hidden width (Llama's ``intermediate_size``);
    * ``rope_theta`` and ``rope_scaling``: RoPE's base, and Llama 3.1's long-context rescaling of
      its frequencies (``{"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
      "original_max_position_embeddings"}``);
    * ``sliding_window``: each query sees only the last ``sliding_window`` positions (Mistral),
      written as an attention mask;
    * ``qk_norm_weight``: QK-norm with a learned gain per dimension (Qwen3);
    * ``n_expert > 0``: a mixture of ``n_expert`` SwiGLU experts of width ``expert_hidden`` in
      place of every MLP, ``n_expert_active`` per token (:class:`aigc_lib.models.moe.MoE`).
    """

    norm: str = "layernorm"
    norm_eps: float = 1e-5
    n_kv_head: int | None = None
    head_dim: int | None = None
    mlp_hidden: int | None = None
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    sliding_window: int | None = None
    qk_norm_weight: bool = False
    n_expert: int = 0
    n_expert_active: int = 2
    expert_hidden: int | None = None
    norm_topk_prob: bool = True
    router_aux_loss_coef: float = 0.01

    def __post_init__(self):
        for name in ("n_kv_head", "head_dim", "mlp_hidden", "sliding_window", "expert_hidden"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"LLMConfig.{name} must be a positive int or None, got {value!r}")
        super().__post_init__()
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {', '.join(NORM_KINDS)}, got {self.norm!r}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.kv_heads}: "
                             "each key/value head serves the same number of query heads")
        if self.qk_norm_weight and not self.qk_norm:
            raise ValueError("qk_norm_weight=True gives QK-norm a learned gain: set qk_norm=True too")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps}")
        if self.rope_theta <= 1:
            raise ValueError(f"rope_theta must be > 1, got {self.rope_theta}")
        if self.rope_scaling is not None:
            rope_frequencies(self.head_size, self.rope_theta, self.rope_scaling)  # checks the keys
        if self.n_expert:
            if not 1 <= self.n_expert_active <= self.n_expert:
                raise ValueError(f"n_expert_active must be in [1, n_expert={self.n_expert}], "
                                 f"got {self.n_expert_active}")
            if self.mlp != "swiglu":
                raise ValueError("the experts are SwiGLU MLPs (as in Mixtral and Qwen3-MoE): set mlp='swiglu'")


def rope_frequencies(head_dim: int, base: float = 10000.0, scaling: dict | None = None) -> torch.Tensor:
    """RoPE's ``head_dim / 2`` angular frequencies ``omega_i = base^(-2i / head_dim)``.

    ``scaling={"rope_type": "llama3", ...}`` applies Llama 3.1's rescaling: frequencies whose
    wavelength ``2 pi / omega`` is longer than ``original_max_position_embeddings / low_freq_factor``
    are divided by ``factor``, those shorter than ``... / high_freq_factor`` are kept, and the band
    between is interpolated linearly in ``original_max_position_embeddings / wavelength``.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return inv_freq
    if kind != "llama3":
        raise ValueError(f"rope_scaling of type {kind!r} is not implemented (the book implements "
                         "'llama3'); loading such a model would place its positions wrongly")
    need = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in need if k not in scaling]
    if missing:
        raise ValueError(f"rope_scaling of type 'llama3' needs {', '.join(need)}; missing {missing}")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    if not high > low > 0 or factor <= 0:
        raise ValueError(f"rope_scaling needs high_freq_factor > low_freq_factor > 0 and factor > 0, got {scaling}")
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelength - low) / (high - low)
    between = (wavelength <= old_context / low) & (wavelength >= old_context / high)
    return torch.where(between, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def rope_angles(T: int, head_dim: int, offset: int = 0, base: float = 10000.0,
                scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of the rotary angles ``theta_{t,i} = t / base^(2i / head_dim)``, ``T x head_dim``.

    Positions ``offset .. offset+T-1``; each angle appears twice (for the two halves that
    :func:`apply_rope` pairs), the layout of GPT-NeoX and LLaMA. ``scaling``: see :func:`rope_frequencies`.
    """
    inv_freq = rope_frequencies(head_dim, base, scaling)
    angles = torch.arange(offset, offset + T, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs ``(x_i, x_{i+d/2})`` of each ``... x T x d`` vector by the angle of its position.

    ``q_s . k_t`` then depends on the positions only through ``s - t``: attention sees relative
    positions, and no position embedding is added to the tokens.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class RMSNorm(nn.Module):
    """``RMSNorm(x) = x / sqrt(mean_i x_i^2 + eps) * g`` (Zhang & Sennrich 2019).

    LayerNorm without the mean subtraction and the bias: one statistic per vector instead of two.
    Computed in float32 whatever the input's dtype, as Llama and Qwen3 do.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))  # g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def make_norm(config: GPTConfig, dim: int | None = None) -> nn.Module:
    """The normalisation ``config.norm`` names, over ``dim`` (default ``n_embd``) features."""
    dim = config.n_embd if dim is None else dim
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.bias)


def attention_mask(T: int, past: int, window: int | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Which keys each query may read, ``T x (past + T)`` booleans.

    Query ``i`` sits at position ``p = past + i`` and reads key ``j`` if ``j <= p`` (causal) and,
    with a sliding ``window`` (Mistral), ``j > p - window``: the last ``window`` positions, itself included.
    """
    p = torch.arange(past, past + T, device=device)[:, None]
    j = torch.arange(past + T, device=device)[None, :]
    allowed = j <= p
    if window is not None:
        allowed = allowed & (j > p - window)
    return allowed


class KVCache:
    """Keys and values of every layer for the tokens processed so far.

    ``k[l]`` and ``v[l]`` have shape ``B x n_head x T_past x head_dim``. Passing a cache to
    :meth:`GPT.forward` makes the model attend to the cached tokens and append the new ones, so
    step ``t`` of generation runs the projections and MLPs on one position instead of ``t``
    (O(n d^2) in total for n new tokens instead of O(n^2 d^2)) and attention for one query
    instead of ``t`` queries (O(n^2 d) in total instead of O(n^3 d)). Attention over the past
    stays quadratic in total: the cache removes recomputation, not the attention itself.
    """

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        """The number of cached positions."""
        return self.length(0)

    def length(self, layer: int) -> int:
        """The number of positions cached for ``layer``."""
        return 0 if self.k[layer] is None else self.k[layer].size(2)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys/values for ``layer``; return all keys/values so far."""
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search reorders beams this way)."""
        self.k = [None if k is None else k.index_select(0, index) for k in self.k]
        self.v = [None if v is None else v.index_select(0, index) for v in self.v]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.n_kv_head, self.head_dim = config.kv_heads, config.head_size
        self.rope, self.qk_norm = config.rope, config.qk_norm
        self.rope_theta, self.rope_scaling = config.rope_theta, config.rope_scaling
        self.window = config.sliding_window
        # q has n_head heads; k and v have n_kv_head each (grouped-query attention when fewer)
        self.sizes = [self.n_head * self.head_dim] + 2 * [self.n_kv_head * self.head_dim]
        self.c_attn = nn.Linear(config.n_embd, sum(self.sizes), bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=config.bias)  # W_O
        if config.qk_norm_weight:  # Qwen3: QK-norm with a learned gain per dimension
            self.q_norm = RMSNorm(self.head_dim, config.norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.norm_eps)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.record_weights = False  # True: use the written-out attention and keep its weights
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.sizes, dim=2)
        # B x T x (heads * head_dim) -> B x heads x T x head_dim: each head attends in its own subspace
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (t.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2) for t in (k, v))
        past = cache.length(layer) if cache is not None else 0
        if self.qk_norm:  # unit-RMS queries and keys: the logits cannot grow without bound
            if hasattr(self, "q_norm"):
                q, k = self.q_norm(q), self.k_norm(k)
            else:
                q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if self.rope:  # rotate by position (past.. past+T-1): a cached key keeps its rotation
            cos, sin = rope_angles(T, self.head_dim, offset=past, base=self.rope_theta,
                                   scaling=self.rope_scaling)
            cos, sin = cos.to(q), sin.to(q)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # attend to the cached prefix too, and remember this step's k, v
            k, v = cache.update(layer, k, v)  # the cache holds n_kv_head heads: that is GQA's saving
        if self.n_kv_head != self.n_head:  # query head h reads key/value head h // group
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if self.window is not None and past + T > self.window:  # sliding window: an explicit mask
            mask, is_causal = attention_mask(T, past, self.window, x.device), False
        elif past == 0:
            mask, is_causal = None, T > 1
        elif T == 1:
            mask, is_causal = None, False  # one new query may look at every cached key
        else:  # several new queries after a cached prefix: query i sees keys 0..past+i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            is_causal = False
        if self.record_weights:  # the teaching version, to look at the attention maps
            y, self.weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal,
                                                           return_weights=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)  # concatenate the heads
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """FFN(x) = W2 GELU(W1 x + b1) + b2, applied at every position independently.

    ``config.mlp`` swaps the nonlinearity: ``"relu2"`` is ``W2 ReLU(W1 x)^2`` (So et al. 2021);
    ``"swiglu"`` is ``W2 (SiLU(W1 x) * (W3 x))`` (Shazeer 2020) with a hidden layer 2/3 as wide, so
    that its three matrices hold as many weights as the other two's two.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        hidden = 4 * config.n_embd if config.mlp != "swiglu" else 8 * ((8 * config.n_embd // 3 + 7) // 8)
        hidden = config.mlp_hidden or hidden  # Llama and Qwen3 state their width
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)  # W1, b1
        if self.kind == "swiglu":
            self.c_gate = nn.Linear(config.n_embd, hidden, bias=config.bias)  # W3
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU is the tanh approximation
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)  # W2, b2
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "gelu":
            h = self.gelu(h)
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = F.silu(h) * self.c_gate(x)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x = x + Attn(LN(x)); x = x + FFN(LN(x)).

    ``config.norm="rmsnorm"`` makes LN an RMSNorm; ``config.n_expert > 0`` makes FFN a mixture of experts.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config.n_embd, config.expert_hidden or config.mlp_hidden or 4 * config.n_embd,
                       config.n_expert, config.n_expert_active, bias=config.bias,
                       norm_topk_prob=config.norm_topk_prob) if config.n_expert else MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A decoder-only Transformer language model: p(x_t | x_<t) for every position t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
            **({} if config.rope else {"wpe": nn.Embedding(config.block_size, config.n_embd)}),  # learned positions
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # Weight tying (Press & Wolf 2017): the output layer reuses the token embedding matrix.
            self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections by 1/sqrt(2 n_layer) so the residual stream's
        # variance does not grow with depth (two residual additions per block).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied embedding counted once).

        ``non_embedding=True`` leaves out the position embedding, as nanoGPT reports it.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def new_cache(self) -> KVCache:
        """An empty key/value cache for :meth:`forward`."""
        return KVCache(self.config.n_layer)

    def _check_input(self, idx: torch.Tensor, past: int) -> None:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.long, torch.int):
            raise ValueError("idx must be a B x T tensor of integer token ids (torch.long), got "
                             + (f"shape {tuple(idx.shape)} dtype {idx.dtype}" if isinstance(idx, torch.Tensor)
                                else type(idx).__name__))
        T = idx.size(1)
        if T == 0:
            raise ValueError("idx is empty: give at least one token per sequence")
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} is longer than the context window "
                             f"block_size={self.config.block_size}; crop it to the last "
                             f"{self.config.block_size} tokens (idx[:, -block_size:])")
        if torch.compiler.is_compiling():  # reading the ids back would break the compiled graph
            return
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size - 1}] "
                             f"(vocab_size={self.config.vocab_size}), got ids in [{lo}, {hi}]; "
                             "check that the tokenizer matches the model")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                cache: KVCache | None = None, last_only: bool = False):
        """Logits of the next token at every position, and the loss if ``targets`` are given.

        ``idx`` and ``targets`` are B x T token ids; ``targets[b, t]`` is the token that follows
        ``idx[b, t]`` (negative targets are ignored). Returns ``(logits, loss)`` with logits
        B x T x vocab_size (B x 1 x vocab_size with ``last_only=True``) and
        ``loss = -mean_t log p(targets_t | idx_<=t)`` or ``None`` (a mixture of experts in
        training mode adds ``router_aux_loss_coef`` times :meth:`aux_loss`). With a ``cache`` the tokens in
        ``idx`` continue the cached ones, and their keys and values are appended to it.
        """
        past = len(cache) if cache is not None else 0
        self._check_input(idx, past)
        T = idx.size(1)
        x = self.transformer.wte(idx)
        if "wpe" in self.transformer:  # with rope, attention itself knows the positions
            x = x + self.transformer.wpe(torch.arange(past, past + T, dtype=torch.long, device=idx.device))
        x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer)
        x = self.transformer.ln_f(x)
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)),
                                   targets.reshape(-1).masked_fill(targets.reshape(-1) < 0, -1),
                                   ignore_index=-1)
            if self.training and self.config.n_expert:  # keep the experts evenly loaded
                loss = loss + self.config.router_aux_loss_coef * self.aux_loss()
            return logits, loss
        logits = self.lm_head(x[:, [-1], :] if last_only else x)
        return logits, None

    def aux_loss(self) -> torch.Tensor | None:
        """The mixture of experts' load-balancing loss of the last forward pass (mean over layers), or None."""
        losses = [b.mlp.aux_loss for b in self.transformer.h if isinstance(b.mlp, MoE) and b.mlp.aux_loss is not None]
        return torch.stack(losses).mean() if losses else None

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head, ``n_layer x B x n_head x T x T``.

        Runs the written-out attention (same output as the fast path) and keeps its softmax
        weights: entry ``[l, b, h, i, j]`` is how much query ``i`` reads from key ``j``.
        """
        attns = [block.attn for block in self.transformer.h]
        for attn in attns:
            attn.record_weights = True
        try:
            self(idx)
            return torch.stack([attn.weights for attn in attns])
        finally:
            for attn in attns:
                attn.record_weights, attn.weights = False, None

    # ------------------------------------------------------------------ GPT-2 weights
    @classmethod
    def from_pretrained(cls, source: Any = "gpt2", config: GPTConfig | None = None, *,
                        timeout: float = 5.0) -> "GPT":
        """A GPT filled with GPT-2 weights.

        ``source`` is one of

        * a hub name (``"gpt2"``, ``"gpt2-medium"``, ``"gpt2-large"``, ``"gpt2-xl"``): loaded with
          ``transformers`` from the local cache, else from the hub; offline, a ``RuntimeError``
          says so within ``timeout`` seconds instead of hanging;
        * a folder written by ``GPT2LMHeadModel.save_pretrained`` (no network); a folder of another
          family (Llama, Qwen3) is refused with the name of its loader in :mod:`aigc_lib.models.open_llms`;
        * a ``transformers.GPT2LMHeadModel`` (e.g. one built from a ``GPT2Config``);
        * a GPT-2 state dict (then ``config`` is required).

        GPT-2 stores its linear layers as ``Conv1D`` with weight ``in x out``; ``nn.Linear`` keeps
        ``out x in``, so those four matrices per block are transposed on the way in.
        """
        if isinstance(source, str):
            hf = _load_hf_gpt2(source, timeout)
            return cls.from_pretrained(hf)
        if isinstance(source, nn.Module):
            hf_config = getattr(source, "config", None)
            if hf_config is None or getattr(hf_config, "model_type", "gpt2") != "gpt2":
                right = HF_LOADERS.get(getattr(hf_config, "model_type", None))
                raise ValueError("from_pretrained expects a transformers GPT2LMHeadModel "
                                 f"(with a GPT2Config), got {type(source).__name__}"
                                 + (f"; save it and load the folder with {right}" if right else ""))
            act = getattr(hf_config, "activation_function", "gelu_new")
            if act not in ("gelu_new", "gelu_pytorch_tanh"):
                raise ValueError(f"the book's GPT uses the tanh GELU of GPT-2; this model uses {act!r}")
            config = GPTConfig(block_size=hf_config.n_positions, vocab_size=hf_config.vocab_size,
                               n_layer=hf_config.n_layer, n_head=hf_config.n_head,
                               n_embd=hf_config.n_embd, dropout=0.0, bias=True)
            source = source.state_dict()
        if not isinstance(source, Mapping):
            raise ValueError("source must be a hub name, a GPT2LMHeadModel or a state dict, "
                             f"got {type(source).__name__}")
        if config is None:
            raise ValueError("loading from a state dict needs the GPTConfig it was trained with")
        if not config.is_gpt2:
            raise ValueError("GPT-2 weights need GPT-2's architecture: build the GPTConfig with rope=False, "
                             "mlp='gelu', qk_norm=False and tie_embeddings=True (the defaults)")
        model = cls(config)
        model.load_gpt2_state_dict(source)
        return model.eval()

    def load_gpt2_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy a Hugging Face GPT-2 state dict into this model, checking every name and shape."""
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        # Buffers of older transformers versions (causal masks), not parameters.
        state = {k: v for k, v in state.items()
                 if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        ours = self.state_dict()
        missing = sorted(set(ours) - set(state))
        unexpected = sorted(set(state) - set(ours))
        if missing or unexpected:
            raise ValueError("the state dict does not fit this GPT: "
                             f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
                             "it must be a GPT-2 (GPT2LMHeadModel) state dict")
        with torch.no_grad():
            for name, value in state.items():
                if name.endswith(transposed):
                    value = value.t()
                if value.shape != ours[name].shape:
                    raise ValueError(f"{name}: the state dict has shape {tuple(value.shape)} but this "
                                     f"GPT expects {tuple(ours[name].shape)}; build the GPT with the "
                                     "same GPTConfig as the checkpoint")
                ours[name].copy_(value)


def _load_hf_gpt2(name: str, timeout: float):
    """Load a GPT-2 from a local folder, the local Hugging Face cache, else the hub; fail fast offline."""
    if name not in GPT2_SIZES and not os.path.isdir(name):
        raise ValueError(f"unknown GPT-2 model {name!r}; choose one of {', '.join(GPT2_SIZES)}, "
                         "or give a folder written by GPT2LMHeadModel.save_pretrained")
    try:
        from transformers import GPT2LMHeadModel
    except ImportError as exc:  # pragma: no cover - transformers is in the [full] extra
        raise RuntimeError("loading GPT-2 weights needs `pip install transformers`") from exc
    if os.path.isdir(name):
        check_hf_family(name, "gpt2")  # a Llama or Qwen3 folder would load as a random GPT-2
        return GPT2LMHeadModel.from_pretrained(name, local_files_only=True)
    try:
        return GPT2LMHeadModel.from_pretrained(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local cache: try the hub below
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline or not hub_reachable(timeout):
        raise RuntimeError(f"cannot load {name!r}: it is not in the local Hugging Face cache and the "
                           "hub (huggingface.co) is " + ("disabled by HF_HUB_OFFLINE" if offline else
                                                         f"unreachable (no answer within {timeout:g} s)")
                           + ". Run once with internet access, or use GPT.from_pretrained(model) on a "
                           "GPT2LMHeadModel(GPT2Config()) built locally (random weights).")
    return GPT2LMHeadModel.from_pretrained(name)


def gpt2_source(timeout: float = 5.0) -> str | None:
    """Where pretrained GPT-2 comes from: the folder ``AIGC_GPT2`` names (written by ``save_pretrained``;
    CI's smoke run puts a tiny random one there), else ``"gpt2"`` if the hub answers, else ``None``."""
    folder = os.environ.get("AIGC_GPT2", "").strip()
    if folder:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"AIGC_GPT2={folder!r} is not a folder; point it at one written by "
                                    "GPT2LMHeadModel.save_pretrained (and the tokenizer's), or unset it")
        return folder
    return "gpt2" if hub_reachable(timeout) else None


def hub_reachable(timeout: float = 5.0, host: str = "huggingface.co") -> bool:
    """True if a TCP connection to the Hugging Face hub opens within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    return reachable(host, 443, timeout)
