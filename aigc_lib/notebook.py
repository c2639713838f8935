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
