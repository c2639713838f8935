"""Unit tests run in the quick profile with a throw-away model cache."""
import os
import tempfile

os.environ["AIGC_PROFILE"] = os.environ.get("AIGC_PROFILE") or "quick"
os.environ["AIGC_CACHE"] = tempfile.mkdtemp(prefix="aigc-test-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")
