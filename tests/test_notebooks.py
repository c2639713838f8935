"""House rules for the committed notebooks (their execution is tested by nbval)."""
import json
import re
from pathlib import Path

import pytest
import yaml

from aigc_lib.notebook import colab_badge

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SETUP_LINES = ['if "google.colab" in sys.modules:', '%pip install -q "aigc_lib[full] @ git+']


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell):
    return "".join(cell["source"])


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = []
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs(path):
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, \
                f"{path.name}: strip outputs before committing (jupyter nbconvert --clear-output)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_starts_with_badge_and_setup(path):
    cells = load(path)["cells"]
    badge, setup = source(cells[0]), source(cells[1])
    assert cells[0]["cell_type"] == "markdown" and "Open In Colab" in badge
    assert colab_badge(path.name) in badge, "cell 1 must start with colab_badge(name): the badge for this notebook"
    assert "data:image/svg+xml" in badge, "the badge image must be inline (no outside request)"
    assert cells[1]["cell_type"] == "code" and all(line in setup for line in SETUP_LINES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_models_come_from_the_package(path):
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not re.search(r"class \w+\((torch\.)?nn\.Module\)", source(cell)), \
                f"{path.name} defines a model: move it into aigc_lib (with a test) and import it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_has_hidden_asserts(path):
    cells = load(path)["cells"]
    hidden = [c for c in cells if "remove-cell" in c.get("metadata", {}).get("tags", [])]
    assert any("assert" in source(c) for c in hidden), \
        f"{path.name}: the numbers in the prose must be checked by asserts in remove-cell cells"


def test_table_of_contents_matches_notebooks():
    listed = {f for f in toc_files() if f.startswith("notebooks/")}
    present = {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert listed == present, "every notebook is in _toc.yml and every _toc.yml entry exists"


def test_repository_is_the_same_everywhere():
    """The badge (aigc_lib.notebook.REPOSITORY), the book's repository button (_config.yml) and every
    notebook's Colab setup cell must name one repository, or a Colab reader installs the wrong code."""
    from aigc_lib.notebook import REPOSITORY

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == f"https://github.com/{REPOSITORY}"
    for path in NOTEBOOKS:
        urls = re.findall(r"git\+(https://github\.com/[\w.-]+/[\w.-]+)", source(load(path)["cells"][1]))
        assert urls == [f"https://github.com/{REPOSITORY}"], f"{path.name}: the setup cell installs {urls}"
