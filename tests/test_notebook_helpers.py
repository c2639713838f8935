import numpy as np
import torch

import pytest

from aigc_lib.notebook import glue, html_table


def test_glue_returns_plain_numbers():
    assert type(glue("a", np.float64(1.5))) is float
    assert type(glue("b", torch.tensor(3))) is int
    assert glue("c", "text") == "text"


def test_html_table_escapes_and_checks_widths():
    html = html_table(("", "a<b"), [("row", 1.5)]).data
    assert "<th>a&lt;b</th>" in html and "<td>1.5</td>" in html
    with pytest.raises(ValueError, match="2 cells"):
        html_table(("x", "y"), [("only one",)])
