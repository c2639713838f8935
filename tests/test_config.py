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


def test_seed_offset_shifts_every_seed(monkeypatch):
    monkeypatch.delenv("AIGC_SEED_OFFSET", raising=False)
    assert config.seed_offset() == 0 and config.run_seed(5) == 5
    base = torch.rand(4, generator=config.generator(5))
    monkeypatch.setenv("AIGC_SEED_OFFSET", "2")
    assert config.seed_offset() == 2 and config.run_seed(5) == 2005
    shifted = torch.rand(4, generator=config.generator(5))
    assert not torch.equal(base, shifted)
    assert torch.equal(shifted, torch.rand(4, generator=torch.Generator().manual_seed(2005)))
    g = config.seed_everything(5)
    assert torch.equal(torch.rand(4, generator=g), shifted)


def test_bad_seed_offset_says_what_to_do(monkeypatch):
    monkeypatch.setenv("AIGC_SEED_OFFSET", "one")
    with pytest.raises(ValueError, match="integer"):
        config.seed_offset()
    monkeypatch.setenv("AIGC_SEED_OFFSET", "-1")
    with pytest.raises(ValueError, match=">= 0"):
        config.seed_offset()


def test_cache_key_includes_the_seed_offset(monkeypatch):
    from aigc_lib.cache import cache_key

    monkeypatch.setenv("AIGC_PROFILE", "quick")
    monkeypatch.delenv("AIGC_SEED_OFFSET", raising=False)
    k0 = cache_key("m", {"a": 1})
    monkeypatch.setenv("AIGC_SEED_OFFSET", "0")
    assert cache_key("m", {"a": 1}) == k0  # offset 0 is the book's own cache
    monkeypatch.setenv("AIGC_SEED_OFFSET", "1")
    assert cache_key("m", {"a": 1}) != k0


def test_full_profile_without_cuda_says_what_it_costs(monkeypatch):
    monkeypatch.setattr(config, "_warned", set())
    monkeypatch.setattr(config.torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("AIGC_PROFILE", "full")
    with pytest.warns(RuntimeWarning, match="hours"):
        assert config.profile() == "full"


def test_mps_is_chosen_with_a_cpu_fallback(monkeypatch):
    monkeypatch.setattr(config, "_warned", set())
    monkeypatch.setattr(config.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config.torch.backends.mps, "is_available", lambda: True)
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    with pytest.warns(RuntimeWarning, match="fall back to the CPU"):
        assert config.device().type == "mps"
    assert config.os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"


def test_reachable_is_false_for_a_closed_port():
    assert config.reachable("127.0.0.1", 9, timeout=1.0) is False


def fake_machine(monkeypatch, samples):
    """Feed fit_threads a sequence of /proc readings (busy, total, own jiffies); return the state."""
    readings = iter(samples)
    monkeypatch.setattr(config, "_cpu_jiffies", lambda: next(readings))
    monkeypatch.setattr(config.os, "cpu_count", lambda: 2)
    for key in ("AIGC_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setitem(config._threads, "last", None)
    monkeypatch.setitem(config._threads, "ours", None)
    monkeypatch.setitem(config._threads, "most", 2)


def test_fit_threads_sheds_a_thread_when_another_process_is_busy(monkeypatch):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        # 200 jiffies of 2 cores pass each time; others use 0 (idle), then 100 (one core), then 10
        fake_machine(monkeypatch, [(0, 0, 0), (150, 200, 150), (350, 400, 250), (500, 600, 390)])
        assert config.fit_threads(every=0) == 2  # first look: nothing to compare with yet
        assert config.fit_threads(every=0) == 2  # idle: both cores are ours
        assert config.fit_threads(every=0) == 1  # another process holds a core: one thread
        assert config.fit_threads(every=0) == 2  # it stopped: the thread comes back
        torch.set_num_threads(1)  # code that pins its own count (e.g. the ring GANs) is respected
        fake_machine(monkeypatch, [(0, 0, 0), (200, 200, 200)])
        monkeypatch.setitem(config._threads, "ours", 2)
        assert config.fit_threads(every=0) == 1
    finally:
        torch.set_num_threads(threads)


def test_fit_threads_rate_limit_and_overrides(monkeypatch):
    threads = torch.get_num_threads()
    try:
        fake_machine(monkeypatch, [])  # any look at /proc would raise StopIteration
        monkeypatch.setitem(config._threads, "checked", config.time.monotonic())
        assert config.fit_threads(every=60) == torch.get_num_threads()  # looked less than 60 s ago
        monkeypatch.setenv("AIGC_THREADS", "1")
        assert config.fit_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("AIGC_THREADS", "zero")
        with pytest.raises(ValueError, match="AIGC_THREADS"):
            config.fit_threads()
        monkeypatch.delenv("AIGC_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        monkeypatch.setitem(config._threads, "checked", 0.0)
        assert config.fit_threads(every=0) == 1  # the user's OMP_NUM_THREADS: left alone
        assert set(config.thread_policy()) == {"threads", "ceiling", "cpus", "fixed_by"}
    finally:
        torch.set_num_threads(threads)


def test_pinned_threads_are_left_alone(monkeypatch):
    threads = torch.get_num_threads()
    fake_machine(monkeypatch, [(0, 0, 0), (0, 200, 0)])  # idle: fit_threads would take both cores
    with config.pinned_threads(1):
        assert config.fit_threads(every=0) == 1 and torch.get_num_threads() == 1
        assert config.fit_threads(every=0) == 1
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="positive number"):
        with config.pinned_threads(-1):
            pass
