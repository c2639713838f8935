"""Character and byte-level BPE tokenizers: round trips, errors, and equality with HF tokenizers."""
import pytest
import tokenizers as hf_tokenizers

from aigc_lib.data import load_shakespeare
from aigc_lib.tokenizers import BPETokenizer, CharTokenizer, bytes_to_unicode, pretokenize

ADVERSARIAL = [
    "",
    " ",
    "\n",
    "落霞与孤鹜齐飞，秋水共长天一色。",
    "emoji 👋🏽 family 👨‍👩‍👧‍👦 flags 🇯🇵 and ZWJ",
    "tabs\tand   runs of    spaces\n\n\n  \r\n trailing   ",
    "contractions: I'll, you've, she's, they'RE, don't",
    "numbers 3.14159, 1e-10, ١٢٣ (Arabic-Indic) ²³",
    "combining: e\u0301 vs é; NFC ≠ NFD",
    "\x00\x01 control \x7f bytes and \ufeff BOM",
    "mixed: Ελληνικά, русский, עברית, हिन्दी, 한국어",
    "x" * 300,
]


@pytest.fixture(scope="module")
def corpus():
    return load_shakespeare()


@pytest.fixture(scope="module")
def bpe(corpus):
    # train on a slice of the training plays plus some Chinese, so merges include multi-byte tokens
    text = corpus.train[:300_000] + "落霞与孤鹜齐飞，秋水共长天一色。" * 300
    return BPETokenizer.train(text, 600)


# ---------------------------------------------------------------- characters
def test_char_round_trip_and_ids(corpus):
    tok = CharTokenizer(corpus.vocab)
    assert tok.vocab_size == len(corpus.vocab) == 84
    text = corpus.val[:5000]
    ids = tok.encode(text)
    assert len(ids) == len(text) and min(ids) >= 0 and max(ids) < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.encode("") == [] and tok.decode([]) == ""
    assert CharTokenizer("abc ").encode("a cab") == [0, 3, 2, 0, 1]


def test_char_unknown_characters_raise_clearly(corpus):
    tok = CharTokenizer(corpus.vocab)
    with pytest.raises(ValueError, match=r"not in this tokenizer's 84-character vocabulary"):
        tok.encode("Hamlet says 落霞")
    with pytest.raises(ValueError, match="outside"):
        tok.decode([84])


def test_char_bad_vocabulary():
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer("")
    with pytest.raises(ValueError, match="repeats"):
        CharTokenizer("abca")


# ---------------------------------------------------------------- BPE
def test_bytes_to_unicode_is_a_bijection():
    m = bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ" and m[ord("A")] == "A"


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_pretokenize_covers_text(text):
    assert "".join(pretokenize(text)) == text


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_bpe_round_trip(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


def test_bpe_untrained_is_utf8_bytes():
    tok = BPETokenizer()
    assert tok.vocab_size == 256
    assert tok.encode("落") == list("落".encode("utf-8"))


def test_bpe_learns_frequent_pairs_and_compresses(corpus, bpe):
    # the most frequent pair in English prose with spaces attached is a space-word start
    first = bpe.token_str(256)
    assert first in {" t", "he", "e ", " a", "th"}
    text = corpus.val[:20_000]
    assert len(bpe.encode(text)) < 0.6 * len(text.encode("utf-8"))
    # some learned token is a whole Chinese character or more (three UTF-8 bytes or more)
    def is_chinese(b: bytes) -> bool:
        try:
            return len(b) >= 3 and all("\u4e00" <= ch <= "\u9fff" for ch in b.decode("utf-8"))
        except UnicodeDecodeError:
            return False
    assert any(is_chinese(b) for b in bpe.token_bytes[256:])


def test_bpe_merges_hand_example():
    # "aaabdaaabac": the textbook example; first merge is (a, a), then (aa, a)... by count
    tok = BPETokenizer.train("aaabdaaabac", 259)
    assert tok.merges[0] == (ord("a"), ord("a"))
    assert tok.decode(tok.encode("aaabdaaabac")) == "aaabdaaabac"
    assert len(tok.encode("aaabdaaabac")) < 11


def test_bpe_truncated_equals_training_smaller(corpus):
    text = corpus.train[:100_000]
    big = BPETokenizer.train(text, 400)
    small = BPETokenizer.train(text, 300)
    assert big.truncated(300).merges == small.merges


def test_bpe_vocab_size_limits_and_bad_ids(bpe):
    with pytest.raises(ValueError, match=">= 256"):
        BPETokenizer.train("hello", 100)
    with pytest.raises(ValueError, match="unreasonably large"):
        BPETokenizer.train("hello", 10**9)
    # a tiny text runs out of pairs that occur twice: fewer merges than asked, never an error
    assert BPETokenizer.train("abcd", 1000).vocab_size == 256
    with pytest.raises(ValueError, match="outside"):
        bpe.decode([bpe.vocab_size])
    with pytest.raises(ValueError, match="does not exist yet"):
        BPETokenizer([(300, 1)])
    with pytest.raises(TypeError, match="decode bytes first"):
        bpe.encode(b"bytes")
    with pytest.raises(ValueError, match=r"\[256, 600\]"):
        bpe.truncated(601)


def _hf_from(tok: BPETokenizer) -> hf_tokenizers.Tokenizer:
    vocab, merges = tok.hf_vocab_and_merges()
    hf = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE(vocab, merges))
    hf.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = hf_tokenizers.decoders.ByteLevel()
    return hf


def test_bpe_encodes_like_hugging_face_on_held_out_text(corpus, bpe):
    hf = _hf_from(bpe)
    held_out = corpus.val[:100_000] + corpus.poems[:50_000]  # plays and poems not trained on
    assert bpe.encode(held_out) == hf.encode(held_out).ids
    for text in ADVERSARIAL:
        assert bpe.encode(text) == hf.encode(text).ids, text
        assert hf.decode(bpe.encode(text)) == text


def test_hf_vocab_export_is_consistent(bpe):
    vocab, merges = bpe.hf_vocab_and_merges()
    assert len(vocab) == bpe.vocab_size and len(merges) == len(bpe.merges)
    assert vocab[merges[0][0] + merges[0][1]] == 256
