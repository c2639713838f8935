"""A pytest plugin: every notebook that nbval executed without a failure goes into the book's
jupyter-cache, so `make book` after `make test` renders those outputs instead of executing every
notebook a second time (about 5 minutes on a 2-core CPU).

The cache matches a notebook by the hash of its code cells and kernelspec, as a `jupyter-book
build` of its own would; a notebook whose code changed after the test run is executed again by
the book build. Load it with `-p nbval_book_cache` (PYTHONPATH=.ci) and say where the cache is
with AIGC_BOOK_CACHE (the Makefile passes _build/.jupyter_cache, the path in _config.yml).
Runs under another seed offset (`make robust`, `make claims`) do not set it: their outputs are
not the book's.
"""
import os
from collections import defaultdict
from pathlib import Path

import pytest

_failed = set()
_seconds = defaultdict(float)


def _notebook_of(nodeid):
    return nodeid.split("::")[0]


def pytest_runtest_logreport(report):
    path = _notebook_of(report.nodeid)
    _seconds[path] += report.duration
    if report.failed or report.skipped:
        _failed.add(path)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    where = os.environ.get("AIGC_BOOK_CACHE")
    if not where or os.environ.get("AIGC_SEED_OFFSET", "0") not in ("", "0"):
        return
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cells = defaultdict(list)  # notebook file -> its executed cells, in order
    for item in session.items:
        if hasattr(item, "test_outputs") and hasattr(item, "cell"):
            cells[item.parent].append(item)
    cache = get_cache(where)
    for nb_file, items in cells.items():
        path = _notebook_of(items[0].nodeid)
        if path in _failed or any(item.test_outputs is None for item in items):
            continue
        for count, item in enumerate(items, start=1):
            item.cell.outputs = item.test_outputs
            item.cell.execution_count = count
            for out in item.cell.outputs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = count
        # what an executed notebook carries: the book renders code cells with its pygments lexer
        nb_file.nb.metadata["language_info"] = dict(IPythonKernel.language_info)
        cache.cache_notebook_bundle(
            CacheBundleIn(nb_file.nb, str(Path(str(nb_file.fspath)).resolve()),
                          data={"execution_seconds": _seconds[path]}),
            check_validity=False, overwrite=True)
        print(f"\nnbval_book_cache: {path} cached for the book")
