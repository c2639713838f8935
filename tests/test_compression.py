"""Quantization, pruning and distillation (aigc_lib.compression)."""
import pytest
import torch
import torch.nn.functional as F

from aigc_lib import compression, zoo
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.training.lm import LMTrainConfig, train_lm


def tiny_gpt(seed=0, n_embd=32, n_layer=2):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=n_layer, n_head=2, n_embd=n_embd, dropout=0.0))


def test_absmax_quantize_error_is_at_most_half_a_step():
    w = torch.randn(8, 50)
    q, s = compression.absmax_quantize(w)
    assert q.dtype == torch.int8 and s.shape == (8, 1)
    assert q.abs().max() <= 127 and (q.abs().amax(1) == 127).all()  # each row's largest weight uses the full range
    assert ((s * q - w).abs() <= s / 2 + 1e-7).all()
    q4, s4 = compression.absmax_quantize(w, bits=4)
    assert q4.abs().max() <= 7 and (s4 * q4 - w).abs().mean() > (s * q - w).abs().mean()  # fewer bits, larger error
    with pytest.raises(ValueError, match="matrix"):
        compression.absmax_quantize(torch.randn(3))
    with pytest.raises(ValueError, match="bits"):
        compression.absmax_quantize(w, bits=16)


def test_int8_gpt_is_close_and_small():
    model = tiny_gpt(n_embd=64).eval()
    q = compression.quantize_int8(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())  # every linear layer was replaced
    x = torch.randint(17, (4, 16))
    with torch.no_grad():
        a, b = model(x)[0], q(x)[0]
    assert (a - b).abs().max() < 0.1 * a.abs().max()
    assert compression.linear_weight_bytes(q) <= 0.40 * compression.linear_weight_bytes(model)
    assert compression.model_bytes(q) < compression.model_bytes(model)
    assert any(p.requires_grad for p in model.parameters())  # the original is untouched
    assert compression.tokens_per_second(q, 17, context=16, n_tokens=5, repeats=1) > 0


def test_prune_magnitude_zeroes_the_smallest_weights_and_spares_the_tied_head():
    model = tiny_gpt()
    wte = model.transformer.wte.weight.detach().clone()
    pruned = compression.prune_magnitude(model, 0.5)
    assert compression.weight_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    assert compression.weight_sparsity(model) < 0.01  # a copy was pruned
    assert torch.equal(pruned.transformer.wte.weight, wte)  # the embedding (tied to lm_head) is not pruned
    assert pruned.lm_head.weight is pruned.transformer.wte.weight  # and the tie survives
    w, w0 = pruned.transformer.h[0].mlp.c_fc.weight, model.transformer.h[0].mlp.c_fc.weight
    kept = w != 0
    assert w0[kept].abs().min() >= w0[~kept].abs().max()  # what was removed was smaller than what stayed
    with pytest.raises(ValueError, match="sparsity"):
        compression.prune_magnitude(model, 1.0)


def test_distillation_loss_matches_its_closed_form_and_gradient():
    torch.manual_seed(0)
    s, t, T = torch.randn(6, 10, requires_grad=True), torch.randn(6, 10), 2.0
    p_t, log_p_s = F.softmax(t / T, -1), F.log_softmax(s / T, -1)
    manual = T ** 2 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    loss = compression.distillation_loss(s, t, T)
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    loss.backward()  # d/ds T^2 KL = T (p_s - p_t) / N
    assert torch.allclose(s.grad, T * (F.softmax(s / T, -1) - p_t).detach() / 6, atol=1e-6)
    assert compression.distillation_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        compression.distillation_loss(torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(ValueError, match="temperature"):
        compression.distillation_loss(t, t, 0.0)


def test_distillation_wrapper_trains_the_student_towards_the_teacher():
    teacher, student = tiny_gpt(seed=1), tiny_gpt(seed=2, n_embd=16, n_layer=1)
    pair = compression.Distillation(student, teacher, alpha=1.0, temperature=1.0)
    x = torch.randint(17, (8, 16), generator=torch.Generator().manual_seed(0))
    pair.eval()
    assert pair(x, x)[1].item() == pytest.approx(student(x, x)[1].item())  # eval: the student's cross-entropy

    def kl_to_teacher():
        with torch.no_grad():
            return compression.distillation_loss(student(x)[0], teacher(x)[0], 1.0).item()

    before = kl_to_teacher()
    data = torch.randint(17, (2000,), generator=torch.Generator().manual_seed(1))
    cfg = LMTrainConfig(steps=60, batch_size=8, block_size=16, lr=3e-3, warmup_steps=5, eval_interval=60, eval_batches=2)
    train_lm(pair, data, data, cfg, progress=False)
    assert kl_to_teacher() < 0.7 * before
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    with pytest.raises(ValueError, match="alpha"):
        compression.Distillation(student, teacher, alpha=2.0)


def test_distilled_recipe_sets_the_student_and_keeps_the_teacher():
    recipe = zoo.DistilledGPT()
    assert (recipe.model.n_layer, recipe.model.n_embd) == (3, 64)  # the pretraining chapter's middle scaling model
    assert recipe.model.block_size == recipe.teacher_recipe.model.block_size
    assert recipe.teacher_recipe == zoo.ShakespeareGPT() and recipe.sample_steps == []
    assert recipe.distill_settings() == {"alpha": 0.5, "temperature": 2.0}
    small = recipe.replace(n_layer=2, alpha=1.0, steps=200)
    assert small.model.n_layer == 2 and small.alpha == 1.0 and small.train.steps == 200
    assert small.teacher_recipe == recipe.teacher_recipe  # the teacher is not the student
    assert small.to_dict()["teacher_recipe"] == zoo.ShakespeareGPT().to_dict()  # and is part of the key
    with pytest.raises(ValueError, match="alpha"):
        compression.Distillation(tiny_gpt(), tiny_gpt(seed=1), **small.replace(alpha=-0.5).distill_settings())
