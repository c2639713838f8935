"""The book's GPT: shapes, causality, parameter count, loss, KV cache, GPT-2 weights, clear errors."""
import math

import pytest
import torch
from torch.nn import functional as F

from aigc_lib.models.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

TINY = dict(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24)


def tiny_gpt(**overrides):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides})).eval()


def tiny_hf(seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(n_positions=TINY["block_size"], vocab_size=TINY["vocab_size"], n_layer=2, n_head=2,
                     n_embd=24, initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def test_shapes_and_loss_is_next_token_cross_entropy():
    model = tiny_gpt()
    idx = torch.randint(0, 37, (3, 10))
    logits, loss = model(idx)
    assert logits.shape == (3, 10, 37) and loss is None
    targets = torch.randint(0, 37, (3, 10))
    logits, loss = model(idx, targets)
    ref = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).mean()
    torch.testing.assert_close(loss, ref)
    assert model(idx, last_only=True)[0].shape == (3, 1, 37)


def test_untrained_loss_is_log_vocab():
    # small initial weights give nearly uniform predictions: loss ~ log V
    model = tiny_gpt(vocab_size=500, block_size=32)
    idx = torch.randint(0, 500, (4, 32))
    _, loss = model(idx, torch.roll(idx, -1, 1))
    assert abs(loss.item() - math.log(500)) < 0.1


def test_ignored_targets():
    model = tiny_gpt()
    idx = torch.randint(0, 37, (2, 6))
    targets = idx.clone()
    targets[:, :3] = -1
    logits, loss = model(idx, targets)
    ref = F.cross_entropy(logits[:, 3:].reshape(-1, 37), idx[:, 3:].reshape(-1))
    torch.testing.assert_close(loss, ref)


def test_causal_future_does_not_change_past():
    model = tiny_gpt()
    idx = torch.randint(0, 37, (2, 12))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 37
    torch.testing.assert_close(model(idx)[0][:, :7], model(changed)[0][:, :7])
    assert not torch.allclose(model(idx)[0][:, 7:], model(changed)[0][:, 7:])


def test_gpt2_parameter_count():
    with torch.device("meta"):  # no memory needed to count
        model = GPT(GPTConfig())
    assert model.num_params() == 124_439_808
    assert model.num_params(non_embedding=True) == 124_439_808 - 1024 * 768
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


def test_kv_cache_gives_the_same_logits():
    model = tiny_gpt()
    idx = torch.randint(0, 37, (2, 14))
    full = model(idx)[0]
    cache = model.new_cache()
    parts = [model(idx[:, :6], cache=cache)[0], model(idx[:, 6:9], cache=cache)[0]]
    parts += [model(idx[:, t:t + 1], cache=cache)[0] for t in range(9, 14)]
    assert len(cache) == 14
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.k[0][0], cache.k[0][1])


def test_attention_maps_are_causal_distributions():
    model = tiny_gpt()
    maps = model.attention_maps(torch.randint(0, 37, (2, 9)))
    assert maps.shape == (2, 2, 2, 9, 9)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 2, 9))
    assert maps.triu(1).abs().max() == 0
    assert not model.transformer.h[0].attn.record_weights  # switched back to the fast path


def test_matches_huggingface_tiny():
    hf = tiny_hf()
    ours = GPT.from_pretrained(hf)
    idx = torch.randint(0, 37, (3, 16))
    with torch.no_grad():
        ref = hf(idx).logits
    assert (ours(idx)[0] - ref).abs().max() < 1e-4
    assert ours.num_params() == hf.num_parameters()


@pytest.mark.slow
def test_matches_huggingface_gpt2_124m_config():
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()  # random weights, GPT-2 small's shapes
    ours = GPT.from_pretrained(hf)
    assert ours.num_params() == hf.num_parameters() == 124_439_808
    idx = torch.randint(0, 50257, (1, 64))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max() < 1e-4


def test_tiny_training_improves():
    model = tiny_gpt()
    model.train()
    data = torch.arange(16).repeat(4, 2)[:, :17] % 37  # a periodic sequence, easy to learn
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        _, loss = model(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_clear_errors():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="context window"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size=37"):
        model(torch.tensor([[1, 37]]))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))
    cache = model.new_cache()
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="context window"):
        model(torch.zeros(1, 7, dtype=torch.long), cache=cache)


def test_mismatched_state_dict_raises():
    hf = tiny_hf()
    with pytest.raises(ValueError, match="same GPTConfig"):
        GPT.from_pretrained(hf.state_dict(), GPTConfig(**{**TINY, "n_embd": 32}))
    state = dict(hf.state_dict())
    state.pop("transformer.ln_f.weight")
    with pytest.raises(ValueError, match="missing"):
        GPT.from_pretrained(state, GPTConfig(**TINY))
    with pytest.raises(ValueError, match="GPTConfig"):
        GPT.from_pretrained(hf.state_dict())


def test_offline_hub_fails_fast_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: the weights are not there
    with pytest.raises(RuntimeError, match="not in the local Hugging Face cache"):
        GPT.from_pretrained("gpt2")
    with pytest.raises(ValueError, match="unknown GPT-2"):
        GPT.from_pretrained("gpt-5")


def test_from_pretrained_reads_a_local_directory(tmp_path):
    """GPT-2 weights from a folder written by save_pretrained (the hub path's code, offline)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=50)).eval()
    hf.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(str(tmp_path))
    idx = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


def test_gpt2_source_is_a_local_folder_when_one_is_named(monkeypatch, tmp_path):
    from aigc_lib.models.gpt import gpt2_source

    monkeypatch.setenv("AIGC_GPT2", str(tmp_path))
    assert gpt2_source(timeout=0.1) == str(tmp_path)
    monkeypatch.setenv("AIGC_GPT2", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        gpt2_source(timeout=0.1)
    monkeypatch.delenv("AIGC_GPT2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert gpt2_source(timeout=0.1) is None
