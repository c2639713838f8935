from dataclasses import dataclass

import pytest
import torch
from torch import nn

from aigc_lib.cache import CacheWarning, cached, checkpoint_path, load_or_train
from aigc_lib.zoo.recipe import Recipe


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))


def fit_counter(calls):
    def fit(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(3.0)
        return {"loss": [1.0, 0.5]}
    return fit


def test_trains_once_then_loads():
    calls = []
    m1, h1 = load_or_train("lin", {"d": 2}, lambda: nn.Linear(2, 1), fit_counter(calls))
    m2, h2 = load_or_train("lin", {"d": 2}, lambda: nn.Linear(2, 1), fit_counter(calls))
    assert len(calls) == 1
    assert torch.equal(m1.weight, m2.weight) and m2.weight.eq(3.0).all()
    assert h2["loss"] == [1.0, 0.5] and h2["train_seconds"] >= 0
    assert not m2.training


def test_changed_config_retrains():
    calls = []
    load_or_train("lin", {"d": 2, "lr": 1}, lambda: nn.Linear(2, 1), fit_counter(calls))
    load_or_train("lin", {"d": 2, "lr": 2}, lambda: nn.Linear(2, 1), fit_counter(calls))
    assert len(calls) == 2


def test_corrupt_checkpoint_is_reported_and_retrained():
    calls = []
    load_or_train("lin", {"d": 2}, lambda: nn.Linear(2, 1), fit_counter(calls))
    checkpoint_path("lin", {"d": 2}).write_bytes(b"not a checkpoint")
    with pytest.warns(CacheWarning, match="unusable"):
        model, _ = load_or_train("lin", {"d": 2}, lambda: nn.Linear(2, 1), fit_counter(calls))
    assert len(calls) == 2 and model.weight.eq(3.0).all()


def test_mismatched_weights_are_reported_and_retrained():
    calls = []
    load_or_train("net", {"v": 1}, lambda: nn.Linear(2, 1), fit_counter(calls))
    with pytest.warns(CacheWarning, match="does not fit"):
        model, _ = load_or_train("net", {"v": 1}, lambda: nn.Linear(3, 1), fit_counter(calls))
    assert len(calls) == 2 and model.weight.shape == (1, 3)


def test_checkpoint_for_other_key_is_not_used():
    cached("thing", {"a": 1}, lambda: {"x": 1})
    # simulate a file written under another key at this path (e.g. a hash collision or a copy)
    path = checkpoint_path("thing", {"a": 1})
    other = checkpoint_path("thing", {"a": 2})
    cached("thing", {"a": 2}, lambda: {"x": 2})
    path.write_bytes(other.read_bytes())
    with pytest.warns(CacheWarning, match="different"):
        assert cached("thing", {"a": 1}, lambda: {"x": 1}) == {"x": 1}


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="name"):
        cached("a/b", {}, lambda: 1)


@dataclass
class LinearRecipe(Recipe):
    name = "linear-recipe"
    d: int = 2
    fill: float = 3.0

    def build(self):
        return nn.Linear(self.d, 1)

    def fit(self, model, progress):
        LinearRecipe.calls += 1
        with torch.no_grad():
            model.weight.fill_(self.fill)
        return {"loss": [1.0]}


def test_a_recipe_trains_once_under_its_own_key():
    LinearRecipe.calls = 0
    recipe = LinearRecipe()
    assert recipe.checkpoint_path() == checkpoint_path("linear-recipe", {"d": 2, "fill": 3.0}, 0)
    assert not recipe.is_cached()
    m1, h1 = recipe.load(progress=False)
    m2, h2 = LinearRecipe().load(progress=False)
    assert LinearRecipe.calls == 1 and recipe.is_cached() and not m2.training
    assert torch.equal(m1.weight, m2.weight) and h2["train_seconds"] == h1["train_seconds"]
    m3, _ = recipe.replace(fill=5.0).load(progress=False)  # another setting, another model
    assert LinearRecipe.calls == 2 and m3.weight.eq(5.0).all()
