"""Unit tests run in the quick profile with a throw-away model cache."""
import os
import tempfile

os.environ["AIGC_PROFILE"] = os.environ.get("AIGC_PROFILE") or "quick"
os.environ["AIGC_CACHE"] = tempfile.mkdtemp(prefix="aigc-test-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")


import logging  # noqa: E402

import pytest  # noqa: E402


class _Deprecations(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if "deprecat" in record.getMessage().lower():
            self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_deprecation_logged_by_transformers():
    """transformers announces some deprecations through its logger (``logger.warning_once``), not
    the ``warnings`` module that pyproject's filterwarnings turns into errors: fail on those too."""
    handler = _Deprecations()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, f"transformers logged a deprecation our code triggers: {handler.messages}"
