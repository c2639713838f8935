"""The pretraining chapter's modern switches: rotary embeddings (vs transformers' LLaMA rotation), squared-ReLU and
SwiGLU MLPs, QK-norm, untied output layer; Muon (vs torch.optim.Muon); the WSD schedule."""
import math

import pytest
import torch

from aigc_lib.models.gpt import GPT, GPTConfig, apply_rope, rope_angles
from aigc_lib.training.lm import LMTrainConfig, configure_optimizer, lr_at, train_lm
from aigc_lib.training.muon import Muon, orthogonalize

MODERN = dict(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, rope=True, mlp="relu2",
              qk_norm=True, bias=False, tie_embeddings=False)


def modern_gpt(**overrides):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**MODERN, **overrides})).eval()


def test_rope_matches_transformers_llama_rotation():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    q, k = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)
    cos, sin = rope_angles(10, 8)
    ref_q, ref_k = llama.apply_rotary_pos_emb(q, k, cos[None], sin[None])
    torch.testing.assert_close(apply_rope(q, cos, sin), ref_q)
    torch.testing.assert_close(apply_rope(k, cos, sin), ref_k)


def test_rope_scores_depend_on_relative_position_only():
    q, k = torch.randn(8), torch.randn(8)
    cos, sin = rope_angles(20, 8)
    rq, rk = apply_rope(q.expand(20, 8), cos, sin), apply_rope(k.expand(20, 8), cos, sin)
    torch.testing.assert_close(rq[5] @ rk[2], rq[15] @ rk[12], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mlp", ["gelu", "relu2", "swiglu"])
def test_modern_switches_shapes_causality_and_kv_cache(mlp):
    model = modern_gpt(mlp=mlp)
    idx = torch.randint(0, 37, (2, 12))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 12, 37) and torch.isfinite(loss)
    changed = idx.clone(); changed[:, 8:] = (changed[:, 8:] + 1) % 37
    torch.testing.assert_close(model(changed)[0][:, :8], logits[:, :8])  # causal
    cache = model.new_cache()
    steps = [model(idx[:, :5], cache=cache)[0][:, -1]] + [model(idx[:, t:t + 1], cache=cache)[0][:, -1] for t in range(5, 12)]
    torch.testing.assert_close(torch.stack(steps, 1), logits[:, 4:], rtol=1e-4, atol=1e-5)
    assert "wpe" not in model.transformer and model.lm_head.weight is not model.transformer.wte.weight


def test_swiglu_has_about_the_weights_of_the_gelu_mlp():
    gelu, swiglu = (sum(p.numel() for p in modern_gpt(mlp=m).transformer.h[0].mlp.parameters()) for m in ("gelu", "swiglu"))
    assert abs(swiglu / gelu - 1) < 0.05


def test_gpt2_weights_need_the_gpt2_architecture():
    assert GPTConfig().is_gpt2 and not GPTConfig(rope=True).is_gpt2
    with pytest.raises(ValueError, match="GPT-2's architecture"):
        GPT.from_pretrained(GPT(GPTConfig(**{**MODERN, "rope": False})).state_dict(), GPTConfig(**MODERN))
    with pytest.raises(ValueError, match="mlp must be one of"):
        GPTConfig(mlp="tanh")
    with pytest.raises(ValueError, match="must be even"):
        GPTConfig(n_embd=6, n_head=2, rope=True)


def test_orthogonalize_sets_singular_values_near_one():
    torch.manual_seed(0)
    for shape in [(32, 96), (128, 32)]:
        s = torch.linalg.svdvals(orthogonalize(torch.randn(shape)))
        assert 0.5 < s.min() and s.max() < 1.25, s


def test_muon_matches_torch_optim_muon():
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon needs PyTorch >= 2.9")
    torch.manual_seed(0)
    ours, theirs = torch.nn.Parameter(torch.randn(48, 16)), None
    theirs = torch.nn.Parameter(ours.detach().clone())
    o1 = Muon([ours], lr=0.02, weight_decay=0.1, dtype=torch.bfloat16)  # torch's runs in bfloat16
    o2 = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.1)
    start = ours.detach().clone()
    for _ in range(3):
        g = torch.randn(48, 16)
        ours.grad, theirs.grad = g.clone(), g.clone()
        o1.step(), o2.step()
    moved = (theirs - start).abs().max()
    assert (ours - theirs).abs().max() < 0.05 * moved  # the same step up to bfloat16 rounding
    with pytest.raises(ValueError, match="matrices only"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_wsd_schedule_is_flat_then_linear():
    cfg = LMTrainConfig(steps=100, lr=1e-2, min_lr=1e-3, warmup_steps=10, schedule="wsd", decay_fraction=0.2)
    assert lr_at(10, cfg) == lr_at(79, cfg) == 1e-2
    assert lr_at(90, cfg) == pytest.approx((1e-2 + 1e-3) / 2) and lr_at(100, cfg) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="schedule"):
        LMTrainConfig(schedule="step")


def test_muon_takes_the_blocks_matrices_only():
    model = modern_gpt()
    opt = configure_optimizer(model, LMTrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02))
    muon = [p for g in opt.param_groups if g["lr_scale"] == pytest.approx(20) for p in g["params"]]
    assert len(muon) == 2 * 4 and all(p.dim() == 2 for p in muon)  # c_attn, c_proj, c_fc, c_proj per block
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_params()


def test_modern_recipe_tiny_run_lowers_loss():
    data = torch.tensor([i % 7 for i in range(3000)], dtype=torch.uint8)
    model = modern_gpt().train()
    cfg = LMTrainConfig(steps=60, batch_size=8, block_size=16, lr=3e-3, warmup_steps=5, eval_interval=30,
                        eval_batches=2, optimizer="muon", schedule="wsd")
    history = train_lm(model, data, data, cfg, progress=False)
    assert history["val_loss"][-1] < 0.5 * math.log(37) and len(history["eval_steps_seconds"]) == 3


def test_muon_run_resumes_to_the_same_state(tmp_path):
    data = torch.tensor([i % 7 for i in range(3000)], dtype=torch.uint8)
    cfg = LMTrainConfig(steps=20, batch_size=4, block_size=16, warmup_steps=2, eval_interval=10,
                        eval_batches=1, optimizer="muon")
    straight = train_lm(modern_gpt().train(), data, data, cfg, progress=False)
    model = modern_gpt().train()
    train_lm(model, data, data, cfg, checkpoint=tmp_path / "ck.pt", stop_at=10, progress=False)
    resumed = train_lm(model, data, data, cfg, checkpoint=tmp_path / "ck.pt", progress=False)
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], abs=1e-5)


def test_modern_shakespeare_recipe_differs_only_by_its_switches(tmp_path, monkeypatch):
    from aigc_lib import zoo

    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    monkeypatch.setenv("AIGC_PROFILE", "quick")
    classic, modern = zoo.ShakespeareGPT().to_dict(), zoo.ModernShakespeareGPT().to_dict()
    assert {k: v for k, v in modern["model"].items() if classic["model"][k] != v} == zoo.MODERN_SWITCHES
    assert {k for k, v in modern["train"].items() if classic["train"][k] != v} == {
        "steps", "batch_size", "eval_interval", "optimizer"}
    model, tok, history = zoo.modern_shakespeare_gpt(n_layer=1, n_head=2, n_embd=16, steps=20, warmup_steps=4,
                                                     eval_interval=10, eval_batches=2, sample_steps=[20],
                                                     progress=False)
    assert not model.config.is_gpt2 and "wpe" not in model.transformer
    assert history["eval_step"] == [0, 10, 20] and len(history["eval_steps_seconds"]) == 3
    assert history["eval_steps_seconds"] == sorted(history["eval_steps_seconds"])
    assert history["eval_steps_seconds"][-1] == history["steps_seconds"] <= history["loop_seconds"]
    assert history["val_loss"][-1] < history["val_loss"][0] and history["samples"][0][0] == 20


def test_the_ablation_rows_are_the_books_recipes():
    import importlib.util
    from pathlib import Path

    from aigc_lib import zoo
    from aigc_lib.notebook import measurement

    path = Path(__file__).resolve().parents[1] / "tools" / "gpt_ablation.py"
    spec = importlib.util.spec_from_file_location("gpt_ablation", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    recipes = [getattr(zoo, cls)().replace(sample_steps=[], **settings) for _, cls, settings, _ in tool.ROWS]
    assert recipes[4] == zoo.ModernShakespeareGPT().replace(sample_steps=[])  # the recipe the pretraining chapter trains
    assert [offset for *_, offset in tool.ROWS] == [0] * 7 + [1, 1, 2, 2]
    record = measurement("cpu_ablation")  # the shipped record was made by these rows, unchanged since
    assert [row["config"] for row in record["rows"]] == [r.to_dict() for r in recipes]


def test_the_model_compiles_without_graph_breaks():
    import torch._dynamo

    model = modern_gpt()
    idx = torch.randint(0, MODERN["vocab_size"], (2, 8))
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(idx, idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons
