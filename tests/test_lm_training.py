"""The language-model training loop: batches, schedule, learning, resume, NaN, DDP (gloo)."""
import math
import os
import tempfile
from dataclasses import dataclass

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from aigc_lib import zoo
from aigc_lib.data import load_shakespeare
from aigc_lib.models.gpt import GPTConfig
from aigc_lib.training.lm import LMTrainConfig, evaluate, get_batch, lr_at, train_lm


@dataclass
class TinyConfig:
    block_size: int = 16
    vocab_size: int = 12


class TinyLM(nn.Module):
    """A two-token-context model with the GPT interface: forward(idx, targets) -> (logits, loss)."""

    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, 16)
        self.prev = nn.Embedding(config.vocab_size, 16)
        self.head = nn.Linear(16, config.vocab_size)

    def forward(self, idx, targets=None):
        prev = F.pad(idx[:, :-1], (1, 0))
        logits = self.head(torch.tanh(self.emb(idx) + self.prev(prev)))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def corpus(n=4000, seed=0):
    """A token stream with structure to learn: x_t = x_{t-1} + 1 mod 12, replaced by noise 10% of the time."""
    g = torch.Generator().manual_seed(seed)
    x = [int(torch.randint(12, (1,), generator=g)), int(torch.randint(12, (1,), generator=g))]
    for _ in range(n - 2):
        nxt = (x[-1] + 1) % 12 if torch.rand(1, generator=g) > 0.1 else int(torch.randint(12, (1,), generator=g))
        x.append(nxt)
    return torch.tensor(x)


def tiny_cfg(**kw):
    base = dict(steps=60, batch_size=8, block_size=16, lr=3e-2, min_lr=3e-3, warmup_steps=5,
                eval_interval=20, eval_batches=4)
    return LMTrainConfig(**{**base, **kw})


def test_get_batch_targets_are_shifted_inputs():
    data = torch.arange(100)
    x, y = get_batch(data, 5, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.long
    assert torch.equal(y, x + 1)  # on arange, the next token is the id plus one
    with pytest.raises(ValueError, match="too few"):
        get_batch(torch.arange(8), 2, 8)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(3, 30), 2, 8)


def test_lr_schedule_warmup_then_cosine():
    cfg = LMTrainConfig(steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-4)
    lrs = [lr_at(s, cfg) for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-3 / 101)
    assert max(lrs) == pytest.approx(1e-3, rel=1e-3) and lrs.index(max(lrs)) in (99, 100)
    assert all(a <= b for a, b in zip(lrs[:100], lrs[1:101]))  # rising during warm-up
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))  # falling afterwards
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    assert lr_at(550, cfg) == pytest.approx((1e-3 + 1e-4) / 2)  # cosine midpoint


def test_config_validation():
    with pytest.raises(ValueError, match="min_lr"):
        LMTrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="warmup_steps"):
        LMTrainConfig(steps=10, warmup_steps=20)
    with pytest.raises(ValueError, match="steps"):
        LMTrainConfig(steps=0)
    with pytest.raises(ValueError, match="unknown setting 'n_layers'.*'n_layer'"):
        zoo.ShakespeareGPT().replace(n_layers=3)
    with pytest.raises(ValueError, match="warmup_steps"):  # the nested config still validates itself
        zoo.ShakespeareGPT().replace(steps=10)


def test_profiles_give_nanogpt_shapes(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "full")  # nanoGPT's shakespeare_char GPU recipe
    recipe = zoo.ShakespeareGPT()
    vocab_size = len(load_shakespeare().vocab)
    assert recipe.model == GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=vocab_size,
                                     dropout=0.2, bias=True)
    assert (recipe.train.steps, recipe.train.batch_size, recipe.train.block_size) == (5000, 64, 256)
    assert recipe.train.compile and recipe.train.mixed_precision
    monkeypatch.setenv("AIGC_PROFILE", "quick")  # its CPU recipe (with a doubled peak learning rate)
    recipe = zoo.ShakespeareGPT().replace(n_embd=64)
    assert recipe.model.n_layer == 4 and recipe.model.n_embd == 64 and recipe.model.block_size == 64
    assert (recipe.train.steps, recipe.train.batch_size, recipe.train.lr) == (2000, 12, 2e-3)
    short = zoo.ShakespeareGPT().replace(block_size=32)
    assert short.train.block_size == short.model.block_size == 32  # sets both


def test_training_lowers_loss_and_records_history():
    torch.manual_seed(0)
    model, data = TinyLM(), corpus()
    history = train_lm(model, data[:3000], data[3000:], tiny_cfg(), progress=False)
    assert len(history["train_loss"]) == len(history["lr"]) == 60
    assert history["eval_step"] == [0, 20, 40, 60]
    assert history["val_loss"][0] == pytest.approx(math.log(12), abs=0.3)  # untrained: near uniform
    assert history["val_loss"][-1] < history["val_loss"][0] - 0.5
    # the exact full-text evaluation agrees with the sampled one on this homogeneous stream
    assert evaluate(model, data[3000:], block_size=16) == pytest.approx(history["val_loss"][-1], abs=0.2)


def test_evaluate_scores_every_token_once():
    torch.manual_seed(0)
    model, data = TinyLM().eval(), corpus(203)
    _, loss = model(data[None, :-1], data[None, 1:])  # one long window (TinyLM has no context limit)
    # TinyLM sees two tokens of context, so only the first token of each window differs
    per_window = evaluate(model, data, block_size=202)
    assert per_window == pytest.approx(loss.item(), abs=1e-6)
    windows = evaluate(model, data, block_size=16, batch_size=5)
    assert abs(windows - loss.item()) < 0.05


def test_evaluate_scores_a_prefix_under_smoke(monkeypatch):
    from aigc_lib.training.lm import SMOKE_EVAL_TOKENS

    torch.manual_seed(0)
    model, data = TinyLM().eval(), corpus(SMOKE_EVAL_TOKENS + 500)
    prefix = evaluate(model, data[:SMOKE_EVAL_TOKENS], block_size=16)
    assert evaluate(model, data, block_size=16) != prefix
    monkeypatch.setenv("AIGC_PROFILE", "full")
    monkeypatch.setenv("AIGC_SMOKE", "1")
    assert evaluate(model, data, block_size=16) == prefix


def test_resume_from_checkpoint_reaches_the_same_state(tmp_path):
    data = corpus()
    torch.manual_seed(0)
    straight = TinyLM()
    h_straight = train_lm(straight, data[:3000], data[3000:], tiny_cfg(), progress=False)

    torch.manual_seed(0)
    first = TinyLM()
    ckpt = tmp_path / "run.pt"
    train_lm(first, data[:3000], data[3000:], tiny_cfg(), checkpoint=ckpt, stop_at=30, progress=False)
    torch.manual_seed(123)  # a differently initialised model: the checkpoint must overwrite it all
    resumed = TinyLM()
    h_resumed = train_lm(resumed, data[:3000], data[3000:], tiny_cfg(), checkpoint=ckpt, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert h_resumed["train_loss"] == h_straight["train_loss"]
    assert h_resumed["val_loss"] == h_straight["val_loss"]
    with pytest.raises(ValueError, match="different LMTrainConfig"):
        train_lm(TinyLM(), data[:3000], data[3000:], tiny_cfg(lr=5e-3), checkpoint=ckpt, progress=False)


def test_resume_after_a_crash(tmp_path):
    data, ckpt = corpus(), tmp_path / "crash.pt"
    torch.manual_seed(0)
    straight = TinyLM()
    train_lm(straight, data[:3000], data[3000:], tiny_cfg(), progress=False)

    def crash(step, model, history):
        if step == 40:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_lm(TinyLM(), data[:3000], data[3000:], tiny_cfg(checkpoint_interval=10), checkpoint=ckpt,
                 on_eval=crash, progress=False)
    resumed = TinyLM()
    train_lm(resumed, data[:3000], data[3000:], tiny_cfg(checkpoint_interval=10), checkpoint=ckpt, progress=False)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_advice():
    torch.manual_seed(0)
    model, data = TinyLM(), corpus()
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        train_lm(model, data[:3000], data[3000:], tiny_cfg(), progress=False)


def test_block_size_longer_than_model_context_raises():
    with pytest.raises(ValueError, match="exceed the model's context"):
        train_lm(TinyLM(TinyConfig(block_size=8)), corpus(), corpus(), tiny_cfg(block_size=16), progress=False)


def test_shakespeare_gpt_trains_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    monkeypatch.setenv("AIGC_PROFILE", "quick")
    kw = dict(n_layer=1, n_head=2, n_embd=16, steps=30, warmup_steps=5, eval_interval=15, eval_batches=2,
              sample_steps=[30], progress=False)
    model, tok, history = zoo.shakespeare_gpt(**kw)
    assert tok.vocab_size == 84 and model.config.vocab_size == 84
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["samples"][0][0] == 30 and len(history["samples"][0][1]) == 300
    step, texts = history["sample_sets"][0]
    assert step == 30 and len(texts) == 8 and texts[0] == history["samples"][0][1]
    assert len(set(texts)) == 8  # eight different samples, not one repeated
    assert 2.0 < history["val_loss_full"] < math.log(84) + 0.1
    assert not list(tmp_path.glob("*.partial.pt"))  # the resumable checkpoint is cleaned up
    again, _, history2 = zoo.shakespeare_gpt(**kw)  # from the cache: same weights, no training
    assert history2["train_seconds"] == history["train_seconds"]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


# ---------------------------------------------------------------- DDP with 2 CPU processes (gloo)
def _ddp_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # deliberately different inits: DDP must broadcast rank 0's weights
    model = TinyLM()
    if rank == 0:
        torch.manual_seed(0)
        model = TinyLM()
    data = corpus()
    history = train_lm(model, data[:3000], data[3000:], tiny_cfg(steps=12, eval_interval=6), progress=False)
    torch.save({"history": history, "state": model.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    torch.manual_seed(0)
    single = TinyLM()
    data = corpus()
    h_single = train_lm(single, data[:3000], data[3000:], tiny_cfg(steps=12, eval_interval=6), progress=False)

    init_file = tempfile.mktemp(dir=tmp_path)
    mp.spawn(_ddp_worker, args=(2, init_file, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for r in ranks:
        assert r["history"]["world_size"] == 2
        assert r["history"]["train_loss"] == pytest.approx(h_single["train_loss"], abs=1e-5)
        assert r["history"]["val_loss"] == pytest.approx(h_single["val_loss"], abs=1e-5)
        for name, p in single.state_dict().items():
            torch.testing.assert_close(r["state"][name], p, atol=1e-5, rtol=1e-4)


def test_global_batch_must_split_evenly_across_processes(monkeypatch):
    import aigc_lib.training.lm as lm

    monkeypatch.setattr(lm, "_world", lambda: (0, 2))  # pretend to be rank 0 of 2
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        train_lm(TinyLM(), corpus(), corpus(), tiny_cfg(batch_size=7), progress=False)
