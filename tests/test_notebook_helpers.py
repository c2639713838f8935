import numpy as np
import torch

from aigc_lib.notebook import glue


def test_glue_returns_plain_numbers():
    assert type(glue("a", np.float64(1.5))) is float
    assert type(glue("b", torch.tensor(3))) is int
    assert glue("c", "text") == "text"
