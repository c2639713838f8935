"""Caption rules: every caption's digit and attributes round-trip, attributes agree with the image,
held-out phrasings never appear in training, and the tokenizer's errors."""
import pytest
import torch

from aigc_lib.data import load_mnist
from aigc_lib.data.captions import (ATTRIBUTE_WORDS, FAMILIES, HELD_OUT_COMBOS, TEMPLATES, AttributeThresholds,
                                    WordTokenizer, caption, measure, parse_caption, prompts, training_captions)


@pytest.fixture(scope="module")
def digits():
    x, y = load_mnist("train")
    return x[:600], y[:600], AttributeThresholds.fit(x, y)


def test_training_captions_round_trip_and_agree_with_the_image(digits):
    x, y, th = digits
    attrs = th.label(x, y)
    texts = training_captions(y, attrs, torch.Generator().manual_seed(0))
    assert {parse_caption(t)["family"] for t in texts} == {"name", "ordinal", "chinese", "attribute"}
    for i, text in enumerate(texts):
        parsed = parse_caption(text)
        assert parsed["digit"] == y[i], text
        for name, value in parsed["attributes"].items():  # the words say what the image shows
            assert attrs[name][i] == value, (text, name)
            assert bool(th.agrees(x[i:i + 1], y[i:i + 1], name, value)[0])
            word = [w for w, nv in ATTRIBUTE_WORDS.items() if nv == (name, value)][0]
            assert int(y[i]) not in HELD_OUT_COMBOS[word], text   # held-out combinations never trained


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluation_prompts_round_trip(family):
    for split in ("seen", "held-out"):
        if not TEMPLATES[family][split] and family != "attribute":
            continue
        for text, d, attrs in prompts(family, split, 30, torch.Generator().manual_seed(1)):
            parsed = parse_caption(text)
            assert parsed["digit"] == d and parsed["attributes"] == attrs and parsed["family"] == family, text


def test_held_out_templates_are_never_training_captions(digits):
    x, y, th = digits
    g = torch.Generator().manual_seed(2)
    train = set(training_captions(y, th.label(x, y), g) + training_captions(y, th.label(x, y), g))
    for family in ("name", "ordinal", "chinese"):
        held = {p[0] for p in prompts(family, "held-out", 50, g)}
        assert not held & train, held & train


def test_measure_orders_thick_and_slanted_digits():
    img = torch.zeros(2, 1, 28, 28)
    img[0, 0, 4:24, 13:15] = 1.0                       # a thin upright bar
    img[1, 0, 4:24, 12:16] = 1.0                       # a thicker one
    m = measure(img)
    assert m["thickness"][1] == 2 * m["thickness"][0] and abs(m["slant"][0]) < 1e-6
    lean = torch.zeros(1, 1, 28, 28)
    for r in range(4, 24):                             # top to the right: right-leaning
        lean[0, 0, r, 20 - (r - 4) // 2] = 1.0
    assert measure(lean)["slant"][0] > 0.3
    assert m["size"][0] == 20 * 2


def test_tokenizer_round_trip_and_errors():
    tok = WordTokenizer(max_len=8)
    ids = tok("a thick, left-leaning seven")
    assert tok.decode(ids) == ["<bos>", "a", "thick", ",", "left-leaning", "seven", "<eos>"]
    assert tok.decode(tok("七")) == ["<bos>", "七", "<eos>"]
    assert tok("").tolist() == [tok.BOS, tok.EOS] + [tok.PAD] * 6   # the unconditional prompt
    with pytest.raises(ValueError, match="cannot encode"):
        tok("a purple seven")
    with pytest.raises(ValueError, match="cannot encode"):
        tok("seven!")
    with pytest.raises(ValueError, match="at most 6"):
        tok("the digit the digit the digit seven")
    with pytest.raises(ValueError, match="not a caption"):
        parse_caption("seven eight")
    with pytest.raises(ValueError, match="family"):
        caption(3, "poetry")


def test_held_out_phrasings_use_only_trained_words_and_ordinals_have_no_shortcut():
    g = torch.Generator().manual_seed(3)
    seen = {w for f in ("name", "ordinal", "chinese", "attribute") for t, _, _ in prompts(f, "seen", 200, g)
            for w in WordTokenizer.split(t)}
    for family in ("name", "ordinal", "chinese", "attribute"):
        for text, _, _ in prompts(family, "held-out", 100, g):
            assert set(WordTokenizer.split(text)) <= seen, text   # new combinations, not new words
    pairs = {(n, d) for t in TEMPLATES["ordinal"]["seen"] for n in ("digit", "number") for d in ("after", "before")
             if n in t and d in t}
    assert len(pairs) == 4  # each noun with each direction: only the direction word tells the digit
