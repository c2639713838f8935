"""Load Llama, Qwen3 and Qwen3-MoE checkpoints (Hugging Face folders) into the book's GPT.

The LLM-architectures chapter's claim, in code: these models are configurations of
:class:`aigc_lib.models.gpt.GPT` (:class:`~aigc_lib.models.gpt.LLMConfig`), so their weights load
into it by renaming, with no code of theirs. Each loader

1. reads ``config.json`` and refuses a folder of another family (naming the right loader), or a
   setting the book does not implement (biases in attention, a rope scaling other than Llama 3's,
   Qwen3's sliding window, MoE layers mixed with dense ones) instead of loading it wrongly;
2. reads the ``*.safetensors`` files exactly as ``save_pretrained`` writes them (transformers 5.x
   keeps a MoE layer's experts fused in memory, ``experts.gate_up_proj``, and writes them one per
   expert, ``experts.{e}.gate_proj``; both layouts load);
3. checks that the key set is exactly the one the configuration implies and every shape fits.

``from_llama(folder)``, ``from_qwen3(folder)``, ``from_qwen3_moe(folder)``; a hub name (e.g.
``"Qwen/Qwen3-0.6B"``) instead of a folder downloads it first (online only).
"""
from __future__ import annotations

import json
import os
from typing import Mapping

import torch

from aigc_lib.models.gpt import GPT, LLMConfig, check_hf_family, hub_reachable

QWEN3_HUB = "Qwen/Qwen3-0.6B"  # Apache-2.0, ungated
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}


def hf_folder(source: str, timeout: float = 5.0) -> str:
    """``source`` if it is a folder, else the local snapshot of the hub model it names (downloaded if needed)."""
    if os.path.isdir(source):
        return source
    if "/" not in source:
        raise ValueError(f"{source!r} is neither a folder nor a hub name like 'Qwen/Qwen3-0.6B'")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    try:
        return snapshot_download(source, allow_patterns=patterns, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local cache: try the hub below
        pass
    if not hub_reachable(timeout):
        raise RuntimeError(f"cannot load {source!r}: it is not in the local Hugging Face cache and the hub "
                           "is unreachable; give a folder written by save_pretrained instead")
    return snapshot_download(source, allow_patterns=patterns)


def qwen3_source(timeout: float = 5.0) -> str | None:
    """Where the LLM-architectures chapter's real Qwen3 comes from: the folder ``AIGC_QWEN3`` names,
    else (under ``AIGC_SMOKE=1``) the tiny random one ``.ci/smoke_fixtures.py`` writes in the cache,
    else ``"Qwen/Qwen3-0.6B"`` if the hub answers, else ``None``."""
    from aigc_lib.config import cache_dir, smoke

    folder = os.environ.get("AIGC_QWEN3", "").strip()
    if folder:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"AIGC_QWEN3={folder!r} is not a folder; point it at one written by "
                                    "Qwen3ForCausalLM.save_pretrained (and its tokenizer), or unset it")
        return folder
    if smoke() and (cache_dir() / "qwen3-tiny").is_dir():
        return str(cache_dir() / "qwen3-tiny")
    return QWEN3_HUB if hub_reachable(timeout) else None


def read_safetensors(folder: str) -> dict[str, torch.Tensor]:
    """Every tensor of a folder's ``model.safetensors`` (or of the shards its index lists)."""
    from safetensors.torch import load_file

    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise ValueError(f"{folder!r} has no model.safetensors (nor an index of shards); save the model "
                         "with save_pretrained (safetensors is its default)")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(os.path.join(folder, name)))
    return state


def _rope(cfg: dict) -> tuple[float, dict | None]:
    """RoPE's base and scaling from a config of transformers 4.x (rope_theta, rope_scaling) or 5.x (rope_parameters)."""
    params = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling") or params
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return float(theta), None
    if kind != "llama3":
        raise ValueError(f"rope scaling of type {kind!r} is not implemented in the book's GPT (it implements "
                         "'llama3'); loading it would place positions wrongly")
    keep = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    return float(theta), {"rope_type": "llama3", **{k: scaling[k] for k in keep if k in scaling}}


def config_from_hf(cfg: dict, block_size: int | None = None) -> LLMConfig:
    """The :class:`LLMConfig` of a Llama, Qwen3 or Qwen3-MoE ``config.json`` (as a dict)."""
    family = cfg.get("model_type")
    if family not in ARCHITECTURES:
        raise ValueError(f"model_type {family!r} is not one of {', '.join(ARCHITECTURES)}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"the book's SwiGLU uses SiLU; this model uses {cfg['hidden_act']!r}")
    for flag in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if cfg.get(flag):
            raise ValueError(f"{flag}=True is not implemented by the book's loaders")
    theta, scaling = _rope(cfg)
    n_head = cfg["num_attention_heads"]
    settings = dict(
        block_size=block_size or cfg.get("max_position_embeddings", 2048), vocab_size=cfg["vocab_size"],
        n_layer=cfg["num_hidden_layers"], n_head=n_head, n_embd=cfg["hidden_size"], dropout=0.0, bias=False,
        rope=True, mlp="swiglu", tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        norm="rmsnorm", norm_eps=cfg.get("rms_norm_eps", 1e-6),
        n_kv_head=cfg.get("num_key_value_heads") or n_head,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // n_head,
        mlp_hidden=cfg["intermediate_size"], rope_theta=theta, rope_scaling=scaling)
    if family in ("qwen3", "qwen3_moe"):  # Qwen3: QK-norm with learned gains, before RoPE
        settings.update(qk_norm=True, qk_norm_weight=True)
    if family == "qwen3_moe":
        if cfg.get("mlp_only_layers") or cfg.get("decoder_sparse_step", 1) != 1:
            raise ValueError("the book's loader needs every layer to be a MoE layer "
                             "(mlp_only_layers=[] and decoder_sparse_step=1)")
        settings.update(n_expert=cfg.get("num_experts") or cfg["num_local_experts"],
                        n_expert_active=cfg["num_experts_per_tok"], expert_hidden=cfg["moe_intermediate_size"],
                        norm_topk_prob=bool(cfg.get("norm_topk_prob", False)),
                        router_aux_loss_coef=cfg.get("router_aux_loss_coef", 0.001))
    return LLMConfig(**settings)


def hf_state_to_gpt(state: Mapping[str, torch.Tensor], config: LLMConfig) -> dict[str, torch.Tensor]:
    """Rename a Llama/Qwen3(-MoE) state dict to the book's GPT: q, k, v projections concatenated into ``c_attn``."""
    state = dict(state)
    out: dict[str, torch.Tensor] = {"transformer.wte.weight": state.pop("model.embed_tokens.weight", None),
                                    "transformer.ln_f.weight": state.pop("model.norm.weight", None)}
    head = state.pop("lm_head.weight", None)  # a tied checkpoint may or may not store it
    out["lm_head.weight"] = out["transformer.wte.weight"] if config.tie_embeddings else head
    for i in range(config.n_layer):
        src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
        take = lambda name: state.pop(src + name, None)  # noqa: E731
        qkv = [take(f"self_attn.{n}_proj.weight") for n in "qkv"]
        out[dst + "attn.c_attn.weight"] = None if any(t is None for t in qkv) else torch.cat(qkv, 0)
        out[dst + "attn.c_proj.weight"] = take("self_attn.o_proj.weight")
        out[dst + "ln_1.weight"] = take("input_layernorm.weight")
        out[dst + "ln_2.weight"] = take("post_attention_layernorm.weight")
        if config.qk_norm_weight:
            out[dst + "attn.q_norm.weight"] = take("self_attn.q_norm.weight")
            out[dst + "attn.k_norm.weight"] = take("self_attn.k_norm.weight")
        if not config.n_expert:
            for ours, theirs in (("c_fc", "gate"), ("c_gate", "up"), ("c_proj", "down")):
                out[dst + f"mlp.{ours}.weight"] = take(f"mlp.{theirs}_proj.weight")
            continue
        out[dst + "mlp.router.weight"] = take("mlp.gate.weight")
        fused_gate_up, fused_down = take("mlp.experts.gate_up_proj"), take("mlp.experts.down_proj")
        for e in range(config.n_expert):
            if fused_gate_up is not None:  # transformers 5.x in memory: E x 2I x H and E x H x I
                gate, up = fused_gate_up[e].chunk(2, dim=0)
                down = None if fused_down is None else fused_down[e]
            else:  # what save_pretrained writes: one Linear per expert
                gate, up, down = (take(f"mlp.experts.{e}.{n}_proj.weight") for n in ("gate", "up", "down"))
            for ours, t in (("c_fc", gate), ("c_gate", up), ("c_proj", down)):
                out[dst + f"mlp.experts.{e}.{ours}.weight"] = t
    missing = sorted(k for k, v in out.items() if v is None)
    if missing or state:
        raise ValueError(f"the checkpoint does not fit this {config.n_layer}-layer configuration: missing "
                         f"{missing[:4]}{'...' if len(missing) > 4 else ''}, unexpected {sorted(state)[:4]}"
                         f"{'...' if len(state) > 4 else ''}")
    return out


def load_into(model: GPT, state: Mapping[str, torch.Tensor]) -> GPT:
    """Copy a state dict in the book's names into ``model``, checking the key set and every shape."""
    ours = model.state_dict()
    if sorted(state) != sorted(ours):
        raise ValueError(f"key mismatch: missing {sorted(set(ours) - set(state))[:4]}, "
                         f"unexpected {sorted(set(state) - set(ours))[:4]}")
    with torch.no_grad():
        for name, value in state.items():
            if value.shape != ours[name].shape:
                raise ValueError(f"{name}: the checkpoint has shape {tuple(value.shape)} but the configuration "
                                 f"implies {tuple(ours[name].shape)}; check config.json against the weights")
            ours[name].copy_(value)
    return model


def _load(source: str, family: str, block_size: int | None, dtype: torch.dtype) -> GPT:
    folder = hf_folder(source)
    cfg = check_hf_family(folder, family)
    archs = cfg.get("architectures") or [ARCHITECTURES[family]]
    if ARCHITECTURES[family] not in archs:
        raise ValueError(f"{folder!r} declares architectures {archs}, not {ARCHITECTURES[family]}")
    config = config_from_hf(cfg, block_size)
    state = hf_state_to_gpt(read_safetensors(folder), config)
    with torch.device("meta"):  # no time spent on a random initialisation that is overwritten
        model = GPT(config)
    model = model.to_empty(device="cpu")
    if config.tie_embeddings:
        model.transformer.wte.weight = model.lm_head.weight
    return load_into(model, state).to(dtype).eval()


def from_llama(source: str, *, block_size: int | None = None, dtype: torch.dtype = torch.float32) -> GPT:
    """The book's GPT holding a Llama (2, 3, 3.1, 3.2) checkpoint: a folder from ``LlamaForCausalLM.save_pretrained``."""
    return _load(source, "llama", block_size, dtype)


def from_qwen3(source: str, *, block_size: int | None = None, dtype: torch.dtype = torch.float32) -> GPT:
    """The book's GPT holding a dense Qwen3 checkpoint (e.g. ``"Qwen/Qwen3-0.6B"`` or a saved folder)."""
    return _load(source, "qwen3", block_size, dtype)


def from_qwen3_moe(source: str, *, block_size: int | None = None, dtype: torch.dtype = torch.float32) -> GPT:
    """The book's GPT holding a Qwen3-MoE checkpoint (e.g. Qwen3-30B-A3B's architecture)."""
    return _load(source, "qwen3_moe", block_size, dtype)
