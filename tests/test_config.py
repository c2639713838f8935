import pytest
import torch

from aigc_lib import config


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "full")
    assert config.profile() == "full"
    monkeypatch.setenv("AIGC_PROFILE", " Quick ")
    assert config.profile() == "quick"
    assert config.by_profile(quick=1, full=2) == 1


def test_unset_profile_follows_cuda(monkeypatch):
    monkeypatch.delenv("AIGC_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.profile() == "full"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.profile() == "quick"


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick, full"):
        config.profile()


def test_device_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert config.device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.device().type == "cpu"


def test_seed_everything_is_deterministic():
    g = config.seed_everything(7)
    a = torch.randn(3), torch.rand(2, generator=g)
    g = config.seed_everything(7)
    b = torch.randn(3), torch.rand(2, generator=g)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError):
        config.seed_everything(-1)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
