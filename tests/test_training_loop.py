"""The shared training loop and finiteness check, best-of-n timing, and a module's device."""
import itertools
import math

import pytest
import torch
from torch import nn

from aigc_lib.config import model_device
from aigc_lib.timing import best_time, spread
from aigc_lib.training.loop import ADVICE, check_finite, train_steps


# ----------------------------------------------------------------------------- check_finite
@pytest.mark.parametrize("value", [0.0, -3.5, 1e30, torch.tensor(2.0), torch.tensor([1.0, -1.0, 0.0])])
def test_check_finite_passes_finite_values_through(value):
    assert check_finite(value) is value


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -math.inf])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_check_finite_raises_with_the_step_and_the_advice(bad, as_tensor):
    value = torch.tensor(bad) if as_tensor else bad
    with pytest.raises(FloatingPointError) as err:
        check_finite(value, "the test loss", step=12, advice="Try something else.")
    message = str(err.value)
    assert "the test loss" in message and "step 12" in message and "Try something else." in message
    assert str(bad) in message  # what it became: nan, inf or -inf
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):  # the default advice
        check_finite(value)
    assert "Lower the learning rate" in ADVICE


def test_check_finite_checks_every_element_of_a_tensor():
    with pytest.raises(FloatingPointError, match="at step 3"):
        check_finite(torch.tensor([1.0, float("nan"), 2.0]), step=3)
    with pytest.raises(FloatingPointError) as err:
        check_finite(torch.tensor(float("inf")))
    assert "at step" not in str(err.value)  # no step given, none claimed


# ----------------------------------------------------------------------------- train_steps
def regression(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


def batches(x, y, batch_size=32):
    for i in itertools.count():
        j = (i * batch_size) % len(x)
        yield x[j:j + batch_size], y[j:j + batch_size]


def mse(model, batch):
    return nn.functional.mse_loss(model(batch[0]), batch[1])


def test_train_steps_lowers_the_loss_of_a_tiny_regression_and_ends_in_eval_mode():
    torch.manual_seed(0)
    model, (x, y) = nn.Linear(3, 1), regression()
    before = mse(model, (x, y)).item()
    history = train_steps(model, batches(x, y), mse, steps=200, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                          progress=False)
    assert len(history["loss"]) == 200 and all(math.isfinite(v) for v in history["loss"])
    assert mse(model, (x, y)).item() < 0.01 * before
    assert not model.training


def test_train_steps_schedules_and_clips():
    torch.manual_seed(0)
    model, (x, y) = nn.Linear(3, 1), regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_steps(model, batches(x, y), mse, steps=10, optimizer=optimizer, grad_clip=1e-3, progress=False,
                scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 10))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # stepped once per step
    # with a tiny clip, 10 steps of lr <= 0.1 move the weights by at most 10 * 0.1 * 1e-3
    torch.manual_seed(0)
    assert (model.weight - nn.Linear(3, 1).weight).norm() <= 1e-3 + 1e-6


def test_train_steps_raises_when_the_batches_run_out():
    model, (x, y) = nn.Linear(3, 1), regression(64)
    finite = [(x[i:i + 32], y[i:i + 32]) for i in (0, 32)]
    with pytest.raises(ValueError, match="ran out after 2 of 5 steps"):
        train_steps(model, iter(finite), mse, steps=5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    progress=False)


def test_train_steps_stops_at_a_nan_loss():
    model, (x, y) = nn.Linear(3, 1), regression(64)
    y = y.clone()
    y[40] = float("nan")  # the second batch of 32 holds it
    with pytest.raises(FloatingPointError, match="at step 1.*Lower the learning rate"):
        train_steps(model, batches(x, y), mse, steps=5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    progress=False)


@pytest.mark.parametrize("steps", [0, -1, 2.5, "3", None])
def test_train_steps_validates_steps(steps):
    model, (x, y) = nn.Linear(3, 1), regression(64)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train_steps(model, batches(x, y), mse, steps=steps, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    progress=False)


def test_train_steps_trains_inside_no_grad():
    model, (x, y) = nn.Linear(3, 1), regression(64)
    with torch.no_grad():  # e.g. called from a metric
        history = train_steps(model, batches(x, y), mse, steps=3,
                              optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    assert len(history["loss"]) == 3


# ----------------------------------------------------------------------------- best_time
def test_best_time_returns_the_last_result_and_the_fastest_run(monkeypatch):
    import aigc_lib.timing

    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])  # runs of 5, 2 and 3 seconds
    monkeypatch.setattr(aigc_lib.timing.time, "perf_counter", lambda: next(clock))
    calls = []
    seconds, result = best_time(lambda: calls.append(1) or len(calls), repeats=3)
    assert seconds == 2.0 and result == 3 and len(calls) == 3


def test_best_time_measures_real_time():
    seconds, result = best_time(lambda: sum(range(1000)), repeats=2)
    assert result == sum(range(1000)) and 0 <= seconds < 1


@pytest.mark.parametrize("repeats", [0, -2, 1.5, "3"])
def test_best_time_rejects_bad_repeats(repeats):
    with pytest.raises(ValueError, match="repeats"):
        best_time(lambda: None, repeats=repeats)


# ----------------------------------------------------------------------------- model_device
class BuffersOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.zeros(3))


def test_model_device_from_parameters_buffers_or_neither():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(BuffersOnly()) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # neither: the CPU
    meta = nn.Linear(2, 2, device="meta")
    assert model_device(meta) == torch.device("meta")  # wherever the parameters are
    buffers = BuffersOnly()
    buffers.table = torch.zeros(3, device="meta")
    assert model_device(buffers) == torch.device("meta")  # a module without parameters: its buffers


def test_spread_warms_up_then_reports_best_median_worst(monkeypatch):
    import aigc_lib.timing

    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])  # timed runs of 5, 2 and 3 seconds
    monkeypatch.setattr(aigc_lib.timing.time, "perf_counter", lambda: next(clock))
    calls = []
    assert spread(lambda: calls.append(1), repeats=3) == {"best": 2.0, "median": 3.0, "worst": 5.0}
    assert len(calls) == 4  # one untimed warm-up call
    with pytest.raises(ValueError, match="repeats"):
        spread(lambda: None, repeats=0)
