"""The pytest plugin that hands nbval's outputs to the book's jupyter-cache (.ci/nbval_book_cache.py):
`make test` executes every notebook, and `make book` after it must render those outputs, not
execute everything a second time."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def run_nbval(tmp_path, *notebooks, **env):
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".ci"), "AIGC_BOOK_CACHE": str(tmp_path / "cache"),
           "AIGC_SEED_OFFSET": "0", **env}
    command = [sys.executable, "-m", "pytest", "-p", "nbval_book_cache", "--nbval-lax",
               "-p", "no:cacheprovider", "-q", *map(str, notebooks)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def write(path, *cells):
    nbformat.write(new_notebook(cells=list(cells), metadata=KERNEL), path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    good = write(tmp_path / "good.ipynb", new_markdown_cell("# A"), new_code_cell("x = 6 * 7"),
                 new_code_cell("print(x)"), new_code_cell("x"))
    bad = write(tmp_path / "bad.ipynb", new_code_cell("print('ran')"), new_code_cell("assert False"))
    return good, bad


def test_a_passing_notebook_is_cached_with_its_outputs_and_a_failing_one_is_not(tmp_path, notebooks):
    good, bad = notebooks
    result = run_nbval(tmp_path, good, bad)
    assert result.returncode == 1, result.stdout  # bad.ipynb fails
    cache = get_cache(str(tmp_path / "cache"))
    _, merged = cache.merge_match_into_notebook(nbformat.read(good, as_version=4))
    code = [cell for cell in merged.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == [1, 2, 3]
    assert code[1].outputs[0].text == "42\n"
    assert code[2].outputs[0].data["text/plain"] == "42" and code[2].outputs[0].execution_count == 3
    assert merged.metadata.language_info.pygments_lexer == "ipython3"  # else the book build warns, per cell
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(bad, as_version=4))


def test_a_changed_notebook_does_not_match(tmp_path, notebooks):
    good, _ = notebooks
    assert run_nbval(tmp_path, good).returncode == 0
    changed = nbformat.read(good, as_version=4)
    changed.cells[1].source = "x = 6 * 8"
    with pytest.raises(KeyError):
        get_cache(str(tmp_path / "cache")).match_cache_notebook(changed)


def test_runs_under_another_seed_offset_are_not_the_books(tmp_path, notebooks):
    good, _ = notebooks
    assert run_nbval(tmp_path, good, AIGC_SEED_OFFSET="1").returncode == 0
    with pytest.raises(KeyError):
        get_cache(str(tmp_path / "cache")).match_cache_notebook(nbformat.read(good, as_version=4))
