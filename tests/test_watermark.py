"""The green-list watermark (Kirchenbauer et al. 2023) and generate's logits_processor hook."""
import math

import pytest
import torch

from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.sampling import generate
from aigc_lib.watermark import Watermark, green_lists, random_edits, z_score


def test_z_score_on_known_counts():
    # gamma 0.25, T 200: expected 50 green, sd sqrt(200 * 0.25 * 0.75) = 6.124; 75 green -> z = 4.08
    assert z_score(75, 200, 0.25) == pytest.approx(25 / math.sqrt(37.5))
    assert z_score(50, 200, 0.25) == 0.0
    assert float(z_score(torch.tensor([75.0]), torch.tensor([200.0]), 0.25)) == pytest.approx(4.0825, abs=1e-3)


def test_green_lists_are_deterministic_and_sized():
    a, b = green_lists(84, 0.25, key=7), green_lists(84, 0.25, key=7)
    assert torch.equal(a, b)
    assert (a.sum(1) == 21).all()  # round(0.25 * 84) green tokens in every row
    assert not torch.equal(a, green_lists(84, 0.25, key=8))  # another key, other lists
    assert not torch.equal(a[0], a[1])  # the list depends on the previous token


def test_processor_adds_delta_to_green_logits_only():
    wm = Watermark(10, gamma=0.5, delta=2.0, key=3)
    ids = torch.tensor([[1, 4], [2, 7]])
    out = wm(ids, torch.zeros(2, 10))
    assert torch.equal(out, 2.0 * wm.green[torch.tensor([4, 7])].float())


def test_counts_match_a_hand_count():
    wm = Watermark(10, gamma=0.5, delta=0.0, key=3)
    ids = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    n_green, n = wm.green_counts(ids)
    assert int(n) == 7 and int(n_green) == sum(bool(wm.green[p, t]) for p, t in zip(ids[:-1], ids[1:]))
    assert wm.detect(ids).n_tokens == 7


def test_hook_watermarks_generation_and_default_is_unchanged():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=20, n_layer=1, n_head=2, n_embd=16)).eval()
    prompt = torch.zeros(8, 1, dtype=torch.long)
    plain = generate(model, prompt, 40, do_sample=True, generator=torch.Generator().manual_seed(1))
    same = generate(model, prompt, 40, do_sample=True, generator=torch.Generator().manual_seed(1),
                    logits_processor=None)
    assert torch.equal(plain, same)
    wm = Watermark(20, gamma=0.25, delta=8.0, key=5)
    marked = generate(model, prompt, 40, do_sample=True, generator=torch.Generator().manual_seed(1),
                      logits_processor=wm)
    assert (wm.z_scores(marked) > 4).all() and (wm.z_scores(plain) < 4).all()
    greedy = generate(model, prompt[:1], 10, logits_processor=wm)  # greedy path too
    assert wm.green_counts(greedy)[0].item() == 10
    beams = generate(model, prompt[:1], 10, num_beams=2, logits_processor=wm)  # and beam search
    assert beams.shape[0] == 1
    with pytest.raises(ValueError, match="callable"):
        generate(model, prompt, 5, logits_processor=3)


def test_random_edits_and_bad_input():
    ids = torch.zeros(3, 100, dtype=torch.long)
    edited = random_edits(ids, 0.3, 50, torch.Generator().manual_seed(0))
    assert ((edited != 0).sum(1) <= 30).all() and (edited != 0).sum() > 60
    with pytest.raises(ValueError, match="gamma"):
        green_lists(84, 1.5)
    with pytest.raises(ValueError, match="delta"):
        Watermark(84, delta=-1)
    with pytest.raises(ValueError, match="vocabulary"):
        Watermark(10)(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 11))
    with pytest.raises(ValueError, match="T >= 2"):
        Watermark(10).green_counts(torch.tensor([1]))
