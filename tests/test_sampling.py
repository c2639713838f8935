"""Decoding rules against hand-worked distributions and against Hugging Face generate."""
import ast
import importlib.util
import inspect
import math

import pytest
import torch
from torch import nn

from aigc_lib.models.gpt import GPT, GPTConfig
import aigc_lib.sampling
from aigc_lib.sampling import (_BookCache, _HFCache, _NoCache, _stepper, apply_repetition_penalty,
                               apply_temperature, generate, process_logits, top_k_filter, top_p_filter)

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor,  # noqa: E402
                                                    TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

V = 40


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    cfg = GPT2Config(n_positions=48, vocab_size=V, n_layer=2, n_head=2, n_embd=32, initializer_range=0.5,
                     bos_token_id=None, eos_token_id=None)  # no default stop token: tests pass their own
    hf = GPT2LMHeadModel(cfg).eval()
    return hf, GPT.from_pretrained(hf)


PROMPT = torch.tensor([[5, 9, 3, 17, 2], [8, 8, 1, 30, 22]])
PAD = V - 1  # a pad id that never appears in the prompt (HF would mask prompt tokens equal to it)


def test_filters_hand_worked():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    keep = lambda z: torch.isfinite(z)[0].tolist()  # noqa: E731
    assert keep(top_k_filter(logits, 2)) == [True, True, False, False, False]
    # top-p keeps the smallest set whose mass reaches p: 0.5 < 0.6 <= 0.5 + 0.2
    assert keep(top_p_filter(logits, 0.6)) == [True, True, False, False, False]
    assert keep(top_p_filter(logits, 0.7)) == [True, True, False, False, False]  # exactly 0.7 reached
    assert keep(top_p_filter(logits, 0.71)) == [True, True, True, False, False]
    assert keep(top_p_filter(logits, 0.3)) == [True, False, False, False, False]  # the top token always stays
    probs = top_p_filter(logits, 0.6).softmax(-1)[0]
    torch.testing.assert_close(probs[:2], torch.tensor([0.5, 0.2]) / 0.7)
    # temperature 0.5 squares then renormalizes the probabilities
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    torch.testing.assert_close(apply_temperature(logits, 0.5).softmax(-1)[0], p**2 / (p**2).sum())
    # repetition penalty: positive logits divided, negative multiplied, unseen tokens untouched
    z = torch.tensor([[2.0, -1.0, 3.0]])
    torch.testing.assert_close(apply_repetition_penalty(z, torch.tensor([[0, 1, 1]]), 2.0),
                               torch.tensor([[1.0, -2.0, 3.0]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filters_match_huggingface_processors(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 200, generator=g) * 3
    ids = torch.randint(0, 200, (4, 12), generator=g)
    ref = RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    for warp in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), TopPLogitsWarper(0.9)):
        ref = warp(ids, ref)
    ours = process_logits(logits, ids, repetition_penalty=1.3, temperature=0.7, top_k=50, top_p=0.9)
    torch.testing.assert_close(ours.softmax(-1), ref.softmax(-1))


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_matches_huggingface(models, use_cache):
    hf, ours = models
    ref = hf.generate(PROMPT, max_new_tokens=20, do_sample=False, pad_token_id=PAD)
    assert torch.equal(generate(ours, PROMPT, 20, use_cache=use_cache), ref)
    assert torch.equal(generate(hf, PROMPT, 20, use_cache=use_cache), ref)  # any transformers causal LM


def test_repetition_penalty_greedy_matches_huggingface(models):
    hf, ours = models
    ref = hf.generate(PROMPT, max_new_tokens=15, do_sample=False, repetition_penalty=1.5, pad_token_id=PAD)
    assert torch.equal(generate(ours, PROMPT, 15, repetition_penalty=1.5), ref)


# With this seed, stop tokens 19, 31, 33 and 2 end some beams early (outputs of 7 to 14 new tokens).
@pytest.mark.parametrize("eos", [None, 19, [19, 31], [33, 2]])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_search_matches_huggingface(models, eos, length_penalty):
    hf, ours = models
    kw = dict(num_beams=4, num_return_sequences=3, length_penalty=length_penalty, eos_token_id=eos)
    ref = hf.generate(PROMPT[:1], max_new_tokens=12, do_sample=False, pad_token_id=PAD, **kw)
    assert torch.equal(generate(ours, PROMPT[:1], 12, pad_token_id=PAD, **kw), ref)
    if eos == [19, 31]:  # any transformers causal LM, its cache reordered between steps
        assert torch.equal(generate(hf, PROMPT[:1], 12, pad_token_id=PAD, **kw), ref)
        if length_penalty < 2:  # (a strong length penalty prefers the long beams)
            assert ref.shape[1] < PROMPT.shape[1] + 12  # a stop token really ended the search early


class TableLM(nn.Module):
    """A toy LM whose next-token log-probs depend only on the last token (a Markov chain)."""

    def __init__(self, table):
        super().__init__()
        self.log_p = torch.log(torch.tensor(table))

    def forward(self, idx):
        return self.log_p[idx]


def test_beam_search_finds_the_best_sequence_greedy_misses():
    # from token 0: greedy takes 1 (p=0.6) then gets at most 0.4 -> 0.24; 2 (p=0.4) then 1.0 -> 0.4
    table = [[0.0, 0.6, 0.4], [0.2, 0.4, 0.4], [0.0, 0.0, 1.0]]
    lm = TableLM(table)
    start = torch.tensor([[0]])
    assert generate(lm, start, 2).tolist() == [[0, 1, 1]]
    assert generate(lm, start, 2, num_beams=2, length_penalty=0.0).tolist() == [[0, 2, 2]]


def test_sampling_is_seeded_and_follows_the_distribution():
    lm = TableLM([[0.7, 0.2, 0.1]] * 3)
    start = torch.zeros(1, 1, dtype=torch.long)
    a = generate(lm, start, 5, do_sample=True, num_return_sequences=4, generator=torch.Generator().manual_seed(0))
    b = generate(lm, start, 5, do_sample=True, num_return_sequences=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    many = generate(lm, start, 1, do_sample=True, num_return_sequences=4000,
                    generator=torch.Generator().manual_seed(1))[:, 1]
    freq = torch.bincount(many, minlength=3) / 4000.0
    assert (freq - torch.tensor([0.7, 0.2, 0.1])).abs().max() < 0.03  # ~4 standard errors
    only_top = generate(lm, start, 20, do_sample=True, top_k=1, generator=torch.Generator().manual_seed(2))
    assert (only_top == 0).all()


def test_stop_tokens_pad_and_end_early():
    lm = TableLM([[0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.1, 0.1, 0.8]])  # 0 -> 1 -> 2 -> 2 ...
    out = generate(lm, torch.tensor([[0], [1]]), 10, eos_token_id=2, pad_token_id=0)
    assert out.tolist() == [[0, 1, 2], [1, 2, 0]]


def test_cached_and_uncached_sampling_agree(models):
    _, ours = models
    kw = dict(do_sample=True, temperature=0.8, top_p=0.9, num_return_sequences=3)
    a = generate(ours, PROMPT, 25, use_cache=True, generator=torch.Generator().manual_seed(0), **kw)
    b = generate(ours, PROMPT, 25, use_cache=False, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)


def test_sliding_window_greedy_and_sampled():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8)).eval()
    with pytest.raises(ValueError, match="sliding_window=True"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 7)  # reads 3 + 7 - 1 = 9 > 8 tokens
    assert generate(model, torch.zeros(1, 3, dtype=torch.long), 6).shape == (1, 9)  # reads 8: fits
    out = generate(model, torch.zeros(1, 3, dtype=torch.long), 10, sliding_window=True)
    ref = torch.zeros(1, 3, dtype=torch.long)
    for _ in range(10):  # the definition: argmax given the last block_size tokens
        ref = torch.cat([ref, model(ref[:, -8:])[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)
    sampled = generate(model, torch.zeros(2, 1, dtype=torch.long), 12, do_sample=True, sliding_window=True,
                       temperature=0.9, top_k=5, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 13)


class Plain(nn.Module):
    """A module without any cache protocol: ``forward(idx)`` is ``fn(idx)``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, idx):
        return self.fn(idx)


@pytest.mark.parametrize("form", ["logits", "tuple", "output"])
def test_plain_module_matches_the_cached_models(models, form):
    hf, ours = models
    fn = {"logits": lambda idx: ours(idx)[0], "tuple": ours,  # the book's GPT returns (logits, loss)
          "output": lambda idx: hf(input_ids=idx, use_cache=False)}[form]  # an object with .logits
    plain = Plain(fn)
    assert [type(_stepper(m, True)) for m in (ours, hf, plain)] == [_BookCache, _HFCache, _NoCache]
    assert torch.equal(generate(plain, PROMPT, 20), generate(ours, PROMPT, 20))


def test_sampling_does_not_import_the_models():
    # the book's GPT is recognized by its cache protocol, so models/ may never import sampling back
    module = aigc_lib.sampling
    imported = []  # every module imported anywhere in the file, `from a import b` counted as a.b
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__)
            imported += [f"{base}.{alias.name}" for alias in node.names]
    assert not [name for name in imported if name == "aigc_lib.models" or name.startswith("aigc_lib.models.")]


@pytest.mark.parametrize("kwargs, message", [
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(do_sample=True, top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(do_sample=True, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(do_sample=True, top_k=0), "top_k must be an int >= 1"),
    (dict(num_beams=0), "num_beams must be an int >= 1"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(top_p=0.9), "do_sample=True"),  # the sources' bug: top_p without sampling is ignored
    (dict(do_sample=True, num_beams=3), "beam sampling"),
    (dict(num_beams=2, num_return_sequences=3), "at most num_beams"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=60), "context window"),
])
def test_invalid_settings_raise(models, kwargs, message):
    _, ours = models
    kwargs = {"max_new_tokens": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(ours, PROMPT, **kwargs)


def test_bad_prompts_raise(models):
    _, ours = models
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(ours, torch.zeros(1, 0, dtype=torch.long), 5)
    with pytest.raises(ValueError, match=r"\[0, 39\]"):
        generate(ours, torch.tensor([[1, 40]]), 5)
