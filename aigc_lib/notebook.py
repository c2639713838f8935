"""Small helpers for the chapter notebooks."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Record ``value`` under ``name`` so the prose can quote it with ``{glue:text}`name:.2f```.

    NumPy and one-element torch scalars become plain Python numbers (their repr must parse as a
    number for the format spec). Uses myst-nb's ``glue`` when it is installed (the book build);
    elsewhere (Colab, plain Jupyter) it only returns the value, so notebooks run the same everywhere.
    """
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value, display=display)
    return value


REPOSITORY = "aigc-book/aigc-principles-and-practice"
_BADGE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">'
    '<title>Open in Colab</title><rect rx="3" width="117" height="20" fill="#555"/>'
    '<rect rx="3" x="43" width="74" height="20" fill="#f9ab00"/><rect x="43" width="4" height="20" fill="#f9ab00"/>'
    '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
    '<text x="22" y="14">Open</text><text x="80" y="14" fill="#222">in Colab</text></g></svg>'
)


def colab_badge(notebook: str) -> str:
    """The HTML of the 'Open in Colab' badge for ``notebooks/<notebook>``, with the badge image
    inlined as a data URI so that a page showing it makes no request to another server."""
    import base64

    if not notebook.endswith(".ipynb"):
        raise ValueError(f"give the notebook's file name, e.g. 'background.ipynb', got {notebook!r}")
    src = "data:image/svg+xml;base64," + base64.b64encode(_BADGE_SVG.encode()).decode()
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook}"
    return f'<a href="{url}"><img src="{src}" alt="Open In Colab"/></a>'


def html_table(header, rows):
    """A table for a notebook: ``header`` (column titles) and ``rows`` (sequences of cells, shown as text)."""
    from html import escape

    from IPython.display import HTML

    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row needs {len(header)} cells, like the header")
    cells = lambda row, tag: "".join(f"<{tag}>{escape(str(c))}</{tag}>" for c in row)
    return HTML(f"<table><thead><tr>{cells(header, 'th')}</tr></thead><tbody>"
                + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows) + "</tbody></table>")


def measurement(name: str) -> dict:
    """A measurement shipped with the package (``aigc_lib/measurements/NAME.json``).

    Some figures cannot be computed while the page builds: GPU runs (the book is built on a CPU,
    ``tools/gpu_full_profile.py``) and runs too long for a chapter's time budget (the pretraining
    chapter's ablation, ``tools/gpt_ablation.py``). A tool measures them once and writes a record with its
    conditions (hardware, versions, date, commit, recipe); the book quotes the record, never a
    number edited by hand.
    """
    import json
    from importlib import resources

    path = resources.files("aigc_lib") / "measurements" / f"{name}.json"
    if not path.is_file():
        have = sorted(p.name.removesuffix(".json") for p in (resources.files("aigc_lib") / "measurements").iterdir())
        raise FileNotFoundError(f"no measurement named {name!r}; the package has {have}")
    return json.loads(path.read_text())


def gpu_measurement(name: str = "h200") -> dict:
    """A measurement the book made on a lent GPU (see :func:`measurement`)."""
    return measurement(name)
