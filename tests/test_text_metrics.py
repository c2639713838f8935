"""Text metrics against hand-computed values."""
import math

import pytest
import torch

from aigc_lib.metrics.text import bleu, distinct_n, ngrams, perplexity, repetition_rate, self_bleu, token_nll
from aigc_lib.models.gpt import GPT, GPTConfig


def test_ngrams_and_distinct():
    assert ngrams("a b c".split(), 2) == [("a", "b"), ("b", "c")]
    # "a a a b": bigrams aa, aa, ab -> 2 distinct of 3; with "a b": + ab -> 2 distinct of 4
    assert distinct_n(["a a a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a a a b", "a b"], 2) == pytest.approx(2 / 4)
    assert distinct_n([list("abcd")], 1) == 1.0  # token sequences work too


def test_repetition_rate():
    assert repetition_rate(["the cat sat on the mat"], 1) == pytest.approx(1 - 5 / 6)
    assert repetition_rate(["a b c d e"], 2) == 0.0
    assert repetition_rate(["x x x x x", "a b c d e"], 2) == pytest.approx((1 - 1 / 4 + 0) / 2)


def test_bleu_hand_worked():
    ref = "the cat is on the mat"
    assert bleu(ref, [ref]) == pytest.approx(1.0)
    # "the the the": unigram precision clipped to 2/3 (the appears twice in the reference);
    # with max_n=1 and the brevity penalty exp(1 - 6/3)
    assert bleu("the the the", [ref], max_n=1) == pytest.approx(2 / 3 * math.exp(1 - 2))
    # bigrams of "the cat sat": the-cat matches, cat-sat does not -> p2 = 1/2; p1 = 2/3
    expected = math.exp(0.5 * (math.log(2 / 3) + math.log(1 / 2))) * math.exp(1 - 6 / 3)
    assert bleu("the cat sat", [ref], max_n=2) == pytest.approx(expected)
    # a zero count is smoothed to 0.1 instead of sending BLEU to 0
    assert bleu("dog runs", ["the cat"], max_n=1) == pytest.approx(0.1 / 2)


def test_self_bleu():
    assert self_bleu(["a b c d e", "a b c d e"]) == pytest.approx(1.0)
    same, varied = ["to be or not to be"] * 3, ["to be or not to be", "all the world's a stage", "now is the winter"]
    assert self_bleu(varied) < 0.2 < self_bleu(same)


def test_perplexity_of_uniform_model_is_vocab_size():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=29, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied: zero logits = uniform next-token distribution
    ids = torch.randint(0, 29, (2, 16))
    assert perplexity(model, ids) == pytest.approx(29.0, rel=1e-5)
    assert token_nll(model, ids).shape == (2, 15)


def test_perplexity_counts_only_the_continuation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=29, n_layer=1, n_head=1, n_embd=8))
    ids = torch.randint(0, 29, (1, 12))
    nll = token_nll(model, ids)[0]
    assert perplexity(model, ids, prompt_length=5) == pytest.approx(math.exp(nll[4:].mean().item()), rel=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="list"):
        distinct_n("a single string", 2)
    with pytest.raises(ValueError, match="shorter than n"):
        distinct_n(["a"], 2)
    with pytest.raises(ValueError, match="at least two"):
        self_bleu(["only one"])
    with pytest.raises(ValueError, match="T >= 2"):
        token_nll(GPT(GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=1, n_embd=4)), torch.tensor([[1]]))
