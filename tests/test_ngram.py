import math

import numpy as np
import pytest
import torch

from aigc_lib import zoo
from aigc_lib.data import load_shakespeare
from aigc_lib.models.ngram import CharNGram


TEXT = "abracadabra " * 20


def test_conditional_distributions_sum_to_one():
    m = CharNGram(4, "abcdr ").fit(TEXT)
    for ctx in ["", "a", "ab", "abr", "zz" * 0 + "dd", "rrr"]:
        p = m.next_char_probs(ctx)
        assert p.shape == (6,) and (p > 0).all()
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)


def test_unigram_is_add_one():
    m = CharNGram(1, "ab").fit("aaab")
    assert m.next_char_probs("").tolist() == pytest.approx([4 / 6, 2 / 6])


def test_bigram_matches_witten_bell_by_hand():
    # text "aab": bigrams aa, ab; context "a" seen twice with 2 distinct followers
    m = CharNGram(2, "ab").fit("aab")
    p_uni = np.array([3 / 5, 2 / 5])  # add-one unigram over {a, b}
    expected = (np.array([1, 1]) + 2 * p_uni) / (2 + 2)
    assert m.next_char_probs("a").numpy() == pytest.approx(expected)
    # unseen context "b" falls back to the unigram
    assert m.next_char_probs("b").numpy() == pytest.approx(p_uni)


def test_log_probs_agree_with_next_char_probs():
    m = CharNGram(3, "abcdr ").fit(TEXT)
    text = "abracadab"
    lp = m.log_probs(text)
    manual = [math.log(m.next_char_probs(text[:i])[m.stoi[text[i]]]) for i in range(2, len(text))]
    assert lp == pytest.approx(manual)


def test_higher_order_fits_repetitive_text_better():
    ppl = [CharNGram(n, "abcdr ").fit(TEXT).perplexity(TEXT) for n in (1, 2, 4)]
    assert ppl[0] > ppl[1] > ppl[2] >= 1.0


def test_sampling_is_seeded_and_in_vocab():
    m = CharNGram(3, "abcdr ").fit(TEXT)
    a = m.sample("ab", 30, generator=torch.Generator().manual_seed(1))
    b = m.sample("ab", 30, generator=torch.Generator().manual_seed(1))
    assert a == b and len(a) == 32 and set(a) <= set("abcdr ")


def test_clear_errors():
    with pytest.raises(ValueError, match="order"):
        CharNGram(0, "ab")
    m = CharNGram(2, "ab")
    with pytest.raises(RuntimeError, match="fit"):
        m.perplexity("ab")
    with pytest.raises(ValueError, match="vocabulary"):
        m.fit("abc")


def test_shakespeare_baseline_is_a_trigram_on_the_training_plays():
    assert zoo.BASELINE_ORDER == 3
    corpus = load_shakespeare()
    m = zoo.shakespeare_ngram()
    assert m.order == zoo.BASELINE_ORDER and m.vocab == corpus.vocab
    val = corpus.val[:5000]
    assert math.log(m.perplexity(val)) < math.log(len(corpus.vocab)) - 1.0  # far better than uniform
    assert zoo.shakespeare_ngram(1).perplexity(val) > m.perplexity(val)
