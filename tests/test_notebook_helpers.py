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


def test_gpu_measurement_ships_with_the_package_and_names_its_conditions():
    from aigc_lib.notebook import gpu_measurement

    record = gpu_measurement("h200")
    for key in ("date_utc", "git_commit", "environment", "recipe", "training", "kv_cache", "deviations"):
        assert key in record, key
    assert record["environment"]["gpu"] and record["profile"] == "full"
    with pytest.raises(FileNotFoundError, match="no measurement named 'tpu'.*h200"):
        gpu_measurement("tpu")
