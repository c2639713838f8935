"""Every checked exercise (aigc_lib/exercises/): its checker passes the package's reference, fails
each planted mistake with that mistake's hint, and calls a stub "not implemented yet"."""
import pytest
import torch

from aigc_lib.exercises import Report, check, exercise, exercises, get, reference

EXERCISES = exercises()
MISTAKES = [(key, m) for key, ex in EXERCISES.items() for m in ex.mistakes]


def test_there_are_exercises_with_planted_mistakes():
    assert EXERCISES, "no exercises found in aigc_lib/exercises/"
    few = [key for key, ex in EXERCISES.items() if len(ex.mistakes) < 2]
    assert not few, f"each exercise plants at least two mistakes; these do not: {few}"
    assert all(key.count(".") == 1 for key in EXERCISES), "keys are '<topic>.<name>'"


@pytest.mark.parametrize("key", list(EXERCISES))
def test_the_reference_passes(key):
    report = check(key, reference(key))
    assert report and "passed" in str(report), str(report)


@pytest.mark.parametrize("key,mistake", MISTAKES, ids=[f"{k}: {m.hint[:40]}" for k, m in MISTAKES])
def test_each_planted_mistake_fails_with_its_hint(key, mistake):
    report = check(key, mistake.fn)
    assert not report, f"{key}: the planted mistake passed the checker: {mistake.hint}"
    assert f"hint: {mistake.hint}" in str(report), str(report)


@pytest.mark.parametrize("key", list(EXERCISES))
def test_a_stub_is_not_implemented_yet(key):
    def stub(*args):
        raise NotImplementedError

    report = check(key, stub)
    assert not report and "not implemented yet" in str(report) and "Traceback" not in str(report)


def test_an_error_or_a_wrong_shape_is_reported_in_one_go():
    key = "vae.gaussian_kl"
    crashed = check(key, lambda mu, logvar: mu @ logvar)
    assert not crashed and "raised RuntimeError" in str(crashed)
    wrong_shape = check(key, lambda mu, logvar: mu.sum())
    assert not wrong_shape and "shape ()" in str(wrong_shape) and "hint" not in str(wrong_shape)
    assert isinstance(wrong_shape, Report) and repr(wrong_shape) == str(wrong_shape)
    no_return = check(key, lambda mu, logvar: None)
    assert not no_return and "returned None" in str(no_return)
    assert "mu: tensor(1, 2)" in str(no_return), "the inputs are shown by the reference's parameter names"


def test_an_unknown_key_names_the_topic_s_exercises():
    with pytest.raises(ValueError, match="vae.gaussian_kl"):
        get("vae.no_such_exercise")


def test_a_topic_is_the_module_name():
    @exercise(reference=torch.neg)
    def negate(g):
        yield torch.randn(3, generator=g)

    try:
        assert negate.key == "test_exercises.negate" and negate.cases()[0][0].shape == (3,)
        assert check("test_exercises.negate", lambda x: -x)
    finally:
        from aigc_lib.exercises import core
        core._REGISTRY.pop("test_exercises.negate")


def test_references_written_for_the_exercises_match_the_package():
    """Where no package function is the exercise, the topic module's reference is checked here."""
    import math

    import numpy as np

    from aigc_lib.exercises import background, language_models
    from aigc_lib.models.ngram import CharNGram
    from aigc_lib.tokenizers import BPETokenizer

    text, vocab = "to be or not to be, that is the question", "abehinoqrstu ,"
    unigram = CharNGram(1, vocab).fit(text)
    counts = torch.tensor(np.bincount(unigram.encode(text), minlength=len(vocab)), dtype=torch.float64)
    assert torch.allclose(background._add_k(counts, 1.0), torch.from_numpy(unigram.unigram))
    trigram = CharNGram(3, vocab).fit(text)
    log_probs = torch.from_numpy(trigram.log_probs("not to be"))
    assert math.isclose(background._perplexity(log_probs), trigram.perplexity("not to be"), rel_tol=1e-9)
    for word in ["mississippi", "abababcbc", "hello"]:
        assert BPETokenizer.train(word * 3, 257).merges[0] == \
            language_models._most_frequent_pair(list((word * 3).encode()))
