import pytest
import torch

from aigc_lib.data import load_mnist, load_shakespeare, reversal_task, ring, ring_modes, spiral, two_moons
from aigc_lib.data.shakespeare import POEMS, VAL_PLAYS


def test_mnist_quick_shapes_ranges_and_stratified_split():
    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.99
    assert torch.equal(y.bincount(), torch.full((10,), 400))
    assert torch.equal(yt.bincount(), torch.full((10,), 100))
    # disjoint: no test image equals a train image
    flat, flat_t = x.flatten(1), xt.flatten(1)
    assert not (torch.cdist(flat_t[:200], flat).min(1).values == 0).any()


def test_mnist_split_is_deterministic():
    a, _ = load_mnist("test")
    load_mnist.__globals__["_quick_split"].cache_clear()
    b, _ = load_mnist("test")
    assert torch.equal(a, b)


def test_mnist_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


@pytest.mark.filterwarnings("ignore:AIGC_PROFILE=full without a CUDA GPU")
def test_mnist_full_offline_error_names_quick_profile(monkeypatch, tmp_path):
    """Offline, with no MNIST files, the full profile fails at once with a message naming the quick one."""
    import time

    import aigc_lib.data.mnist as mnist

    monkeypatch.setenv("AIGC_PROFILE", "full")
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    monkeypatch.setattr(mnist, "reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="AIGC_PROFILE=quick"):
        load_mnist("train")
    assert time.perf_counter() - start < 5


@pytest.mark.filterwarnings("ignore:AIGC_PROFILE=full without a CUDA GPU")
def test_mnist_full_profile_reads_local_idx_files(monkeypatch, tmp_path):
    """The full profile's loader (torchvision, download=False) on idx files written from the shipped digits."""
    import aigc_lib.data.mnist as mnist

    monkeypatch.setenv("AIGC_PROFILE", "quick")
    quick = {split: load_mnist(split) for split in ("train", "test")}
    for split, (x, y) in quick.items():
        mnist.write_idx(tmp_path / "data" / "MNIST" / "raw", split, x, y)
    monkeypatch.setenv("AIGC_PROFILE", "full")
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    monkeypatch.setattr(mnist, "reachable", lambda *a, **k: pytest.fail("must not go online"))
    for split, (x, y) in quick.items():
        x_full, y_full = load_mnist(split)
        assert torch.equal(y_full, y) and torch.allclose(x_full, x, atol=1 / 255 / 2)


def test_shakespeare_split_by_whole_plays():
    c = load_shakespeare()
    assert set(c.val_works) == set(VAL_PLAYS) and set(c.poem_works) == set(POEMS)
    assert not set(c.train_works) & set(c.val_works)
    assert not set(c.train_works) & set(c.poem_works)
    assert len(c.train_works) >= 30
    assert 0.08 < len(c.val) / (len(c.train) + len(c.val)) < 0.15
    assert set(c.train) | set(c.val) | set(c.poems) == set(c.vocab)
    assert "To be, or not to be" in c.val and "To be, or not to be" not in c.train


@pytest.mark.parametrize("fn", [ring, two_moons, spiral])
def test_toy_shapes_and_determinism(fn):
    a = fn(500, generator=torch.Generator().manual_seed(0))
    b = fn(500, generator=torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b)
    with pytest.raises(ValueError):
        fn(0)


def test_ring_points_sit_on_their_modes():
    x = ring(4000, std=0.05, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(x, ring_modes()).min(1).values
    assert d.max() < 0.05 * 6
    assert torch.allclose(ring_modes().norm(dim=1), torch.tensor(2.0))


def test_reversal_task_is_seeded_and_checks_its_sizes():
    a = reversal_task(6, length=3, n_symbols=5, generator=torch.Generator().manual_seed(0))
    b = reversal_task(6, length=3, n_symbols=5, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    idx, targets = a
    assert idx.shape == (6, 6) and idx.max() <= 5 and (idx[:, 3] == 5).all()
    with pytest.raises(ValueError, match="length"):
        reversal_task(2, length=0)
    with pytest.raises(ValueError, match="n_symbols"):
        reversal_task(2, n_symbols=1)
