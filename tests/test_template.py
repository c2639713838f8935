import pytest
import torch

from aigc_lib.models.template import TemplateGenerator


def test_fills_every_slot_and_counts_outputs():
    g = TemplateGenerator(["The {a} {b}.", "{b}!"], {"a": ["x", "y"], "b": ["p", "q", "r"]})
    gen = torch.Generator().manual_seed(0)
    outs = {g.generate(gen) for _ in range(300)}
    assert g.num_outputs() == 2 * 3 + 3
    assert outs == {f"The {a} {b}." for a in "xy" for b in "pqr"} | {f"{b}!" for b in "pqr"}


def test_missing_slot_is_a_clear_error():
    with pytest.raises(ValueError, match="slot"):
        TemplateGenerator(["{who} sings"], {})
