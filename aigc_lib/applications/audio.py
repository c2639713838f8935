"""Symbolic music in miniature: rule-based melodies, note tokens, a tiny GPT, a synthesizer, a WAV.

The pipeline mirrors how symbolic music models work (e.g. Music Transformer, Huang et al., 2019):
music becomes a sequence of note tokens, an autoregressive model learns p(note_t | notes_<t), and a
synthesizer turns sampled notes into sound.

**The rules** (:class:`MelodyRules`). A melody is ``n_phrases`` phrases of ``phrase_length``
notes, and it

1. *stays in the key*: every pitch belongs to the scale (C major by default);
2. *moves mostly by step*: consecutive notes are at most ``max_leap`` semitones apart
   (a step or a third; no big jumps);
3. *ends every phrase on the tonic* (a cadence on C).

:func:`rule_melody` writes melodies that obey all three by construction (a random walk over the
scale, steered home at the end of each phrase); :func:`rule_report` measures how often any
melodies obey them; :func:`random_melodies` is the baseline of uniformly random notes from the same
vocabulary.

**Tokens** (:class:`NoteTokenizer`): one token per MIDI pitch in the range, plus a start token.

**Sound**: :func:`synthesize` renders notes as sine waves with a few harmonics, each shaped by an
ADSR envelope (attack, decay, sustain, release); :func:`write_wav` writes 16-bit PCM with the
standard library's ``wave`` module.
"""
from __future__ import annotations

import io
import random
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_lib.config import generator, run_seed

C_MAJOR = (0, 2, 4, 5, 7, 9, 11)  # pitch classes of the scale, in semitones above C
GENERATOR_VERSION = 2  # bump when rule_melody changes: it is part of the melody model's cache key
MOVES = ((-2, 0.1), (-1, 0.35), (0, 0.1), (1, 0.35), (2, 0.1))  # (scale degrees, probability)


# ----------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class MelodyRules:
    """The melody grammar: a pitch range, a scale, phrase structure and the largest allowed interval."""

    low: int = 60            # lowest MIDI pitch of the vocabulary (60 = C4, middle C)
    high: int = 84           # highest MIDI pitch (84 = C6): two octaves, 25 pitches
    scale: tuple[int, ...] = C_MAJOR
    tonic: int = 0           # pitch class every phrase ends on (0 = C)
    n_phrases: int = 4
    phrase_length: int = 8
    max_leap: int = 4        # semitones: a major third at most

    def __post_init__(self):
        if not 0 <= self.low < self.high <= 127:
            raise ValueError(f"need 0 <= low < high <= 127 (MIDI pitches), got low={self.low}, high={self.high}")
        if not self.scale or any(not 0 <= s < 12 for s in self.scale) or self.tonic not in self.scale:
            raise ValueError("scale must be pitch classes 0..11 that include the tonic")
        if self.n_phrases < 1 or self.phrase_length < 2 or self.max_leap < 1:
            raise ValueError("need n_phrases >= 1, phrase_length >= 2 and max_leap >= 1")
        if len(self.scale_pitches) < 3 or not any(p % 12 == self.tonic for p in self.scale_pitches):
            raise ValueError("the range must hold at least three scale notes, one of them a tonic")

    @property
    def length(self) -> int:
        """Notes per melody."""
        return self.n_phrases * self.phrase_length

    @property
    def pitches(self) -> list[int]:
        """Every MIDI pitch of the vocabulary, in scale or not."""
        return list(range(self.low, self.high + 1))

    @property
    def scale_pitches(self) -> list[int]:
        return [p for p in self.pitches if p % 12 in self.scale]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def rule_melody(rules: MelodyRules = MelodyRules(), rng: random.Random | None = None) -> list[int]:
    """One melody (MIDI pitches) that follows every rule, by a steered random walk over the scale.

    The first note is a note of the tonic chord in the lower octave. Each step moves by ``d``
    scale degrees, d in {-2, -1, 0, +1, +2} with probabilities (0.1, 0.35, 0.1, 0.35, 0.1); a move
    past an end of the range bounces back (``-d``), and moves that break ``max_leap`` are dropped.
    The second-to-last note of a phrase must be able to reach a tonic in one allowed move, and the
    last note is the nearest such tonic.
    """
    rng = rng if rng is not None else random.Random()
    pitches = rules.scale_pitches
    tonics = [i for i, p in enumerate(pitches) if p % 12 == rules.tonic]

    def ok(i: int, j: int) -> bool:
        return 0 <= j < len(pitches) and abs(pitches[j] - pitches[i]) <= rules.max_leap

    chord = {rules.tonic, (rules.tonic + 4) % 12, (rules.tonic + 7) % 12}
    i = rng.choice([j for j, p in enumerate(pitches) if p % 12 in chord and p < rules.low + 12])
    melody = [pitches[i]]
    for t in range(1, rules.length):
        pos = t % rules.phrase_length
        if pos == rules.phrase_length - 1:  # cadence: land on the nearest reachable tonic
            i = min((k for k in tonics if ok(i, k)), key=lambda k: abs(pitches[k] - pitches[i]))
        else:
            steps = [(d if 0 <= i + d < len(pitches) else -d, w) for d, w in MOVES]  # bounce off the ends
            options = [(i + d, w) for d, w in steps if ok(i, i + d)]
            if pos == rules.phrase_length - 2:  # prepare the cadence
                options = [(j, w) for j, w in options if any(ok(j, k) for k in tonics)]
            i = rng.choices([j for j, _ in options], weights=[w for _, w in options])[0]
        melody.append(pitches[i])
    return melody


def rule_melodies(n: int, rules: MelodyRules = MelodyRules(), seed: int = 0) -> torch.Tensor:
    """``n`` rule-following melodies, an ``n x rules.length`` tensor of MIDI pitches."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = random.Random(run_seed(seed))
    return torch.tensor([rule_melody(rules, rng) for _ in range(n)])


def random_melodies(n: int, rules: MelodyRules = MelodyRules(), generator: torch.Generator | None = None) -> torch.Tensor:
    """The baseline: ``n`` melodies of uniformly random pitches from the vocabulary's range."""
    return torch.randint(rules.low, rules.high + 1, (n, rules.length), generator=generator)


def _check_melodies(melodies, rules: MelodyRules) -> torch.Tensor:
    m = torch.as_tensor(melodies)
    if m.dim() == 1:
        m = m[None]
    if m.dim() != 2 or m.shape[1] != rules.length or m.dtype.is_floating_point:
        raise ValueError(f"melodies must be N x {rules.length} integer MIDI pitches "
                         f"({rules.n_phrases} phrases of {rules.phrase_length}), got shape {tuple(m.shape)}")
    return m.long()


def rule_report(melodies, rules: MelodyRules = MelodyRules()) -> dict[str, float]:
    """How well melodies (N x length MIDI pitches) follow the rules, as shares in [0, 1]:

    * ``in_scale``: notes in the scale;
    * ``stepwise``: intervals of at most ``max_leap`` semitones;
    * ``cadence``: phrase endings on the tonic;
    * ``all_rules``: melodies that break no rule at all (the strict score).
    """
    m = _check_melodies(melodies, rules)
    in_scale = torch.isin(m % 12, torch.tensor(rules.scale)) & (m >= rules.low) & (m <= rules.high)
    stepwise = (m[:, 1:] - m[:, :-1]).abs() <= rules.max_leap
    ends = m[:, rules.phrase_length - 1::rules.phrase_length]
    cadence = ends % 12 == rules.tonic
    all_rules = in_scale.all(1) & stepwise.all(1) & cadence.all(1)
    return {"in_scale": in_scale.float().mean().item(), "stepwise": stepwise.float().mean().item(),
            "cadence": cadence.float().mean().item(), "all_rules": all_rules.float().mean().item()}


# ----------------------------------------------------------------------------- tokens
class NoteTokenizer:
    """Token 0 = start of melody (BOS); token ``1 + k`` = MIDI pitch ``low + k``."""

    BOS = 0

    def __init__(self, rules: MelodyRules = MelodyRules()):
        self.rules = rules

    @property
    def vocab_size(self) -> int:
        return 1 + self.rules.high - self.rules.low + 1

    def encode(self, melody) -> list[int]:
        """[BOS, pitch tokens...] for one melody of MIDI pitches."""
        pitches = [int(p) for p in melody]
        bad = [p for p in pitches if not self.rules.low <= p <= self.rules.high]
        if bad:
            raise ValueError(f"pitches {bad[:5]} are outside the vocabulary's range "
                             f"{self.rules.low}..{self.rules.high}; transpose the melody or widen MelodyRules")
        return [self.BOS] + [p - self.rules.low + 1 for p in pitches]

    def decode(self, ids) -> list[int]:
        """MIDI pitches of a token sequence (BOS tokens are dropped)."""
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        return [i - 1 + self.rules.low for i in ids if i != self.BOS]


# ----------------------------------------------------------------------------- the model
def melody_model_config(**overrides) -> dict:
    """Everything that defines the cached melody GPT (the cache key): data, model and training.

    ``overrides`` replace entries of ``data`` (``n_melodies``, ``data_seed``), ``model`` (``n_layer``,
    ``n_head``, ``n_embd``) or ``train`` (``steps``, ``batch_size``, ``lr``, ``seed``).
    """
    from aigc_lib.config import by_profile

    rules = MelodyRules()
    cfg = {"rules": rules.to_dict(),
           "data": {"generator": GENERATOR_VERSION, "n_melodies": by_profile(quick=2000, full=10_000),
                    "data_seed": 0},
           "model": {"n_layer": 2, "n_head": 4, "n_embd": 48, "block_size": rules.length + 1, "dropout": 0.0},
           "train": {"steps": by_profile(quick=400, full=3000), "batch_size": 32, "lr": 3e-3, "seed": 0}}
    for key, value in overrides.items():
        section = next((s for s in ("data", "model", "train") if key in cfg[s]), None)
        if section is None or key in ("block_size", "generator"):
            raise ValueError(f"unknown setting {key!r}; choose from data {[k for k in cfg['data'] if k != 'generator']}, "
                             f"model {[k for k in cfg['model'] if k != 'block_size']} or train {list(cfg['train'])}")
        cfg[section][key] = value
    return cfg


def train_melody_model(model: nn.Module, tokens: torch.Tensor, *, steps: int, batch_size: int = 64,
                       lr: float = 3e-3, seed: int = 0, progress: bool = True) -> dict:
    """Next-token cross-entropy on whole melodies: inputs ``tokens[:, :-1]``, targets ``tokens[:, 1:]``.

    ``tokens`` is N x (1 + length), each row [BOS, notes...], so position t of every row is note t
    of its melody and the model can learn where phrases end. AdamW with cosine decay; returns
    ``{"loss": [per-step loss]}``.
    """
    if tokens.dim() != 2 or tokens.size(1) < 2:
        raise ValueError(f"tokens must be N x T token ids with T >= 2, got shape {tuple(tokens.shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    g = generator(seed)
    dev = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 10)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="melody GPT", disable=not progress, leave=False)
    for step in bar:
        batch = tokens[torch.randint(len(tokens), (batch_size,), generator=g)].to(dev)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return {"loss": losses}


def melody_gpt(progress: bool = True, **overrides):
    """The melody GPT (a tiny :class:`~aigc_lib.models.gpt.GPT`) trained on rule melodies, cached.

    Returns ``(model, tokenizer, history)``: ``history["loss"]`` is the per-step training loss,
    ``history["final_loss"]`` its mean over the last 50 steps, ``history["train_seconds"]`` the time.
    """
    from aigc_lib.cache import load_or_train
    from aigc_lib.config import seed_everything
    from aigc_lib.models.gpt import GPT, GPTConfig

    cfg = melody_model_config(**overrides)
    rules = MelodyRules(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["rules"].items()})
    tok = NoteTokenizer(rules)

    def build() -> GPT:
        seed_everything(cfg["train"]["seed"])
        return GPT(GPTConfig(vocab_size=tok.vocab_size, **cfg["model"]))

    def fit(model: GPT) -> dict:
        melodies = rule_melodies(cfg["data"]["n_melodies"], rules, seed=cfg["data"]["data_seed"])
        tokens = torch.tensor([tok.encode(m) for m in melodies.tolist()])
        history = train_melody_model(model, tokens, progress=progress, **cfg["train"])
        history["final_loss"] = float(np.mean(history["loss"][-50:]))
        return history

    model, history = load_or_train("melody-gpt", cfg, build, fit)
    return model, tok, history


@torch.no_grad()
def sample_melodies(model: nn.Module, tokenizer: NoteTokenizer, n: int, *, temperature: float = 1.0,
                    top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` melodies sampled from the model, starting from BOS: ``n x length`` MIDI pitches.

    A sampled BOS inside a melody is not a note; it is replaced by resampling from the remaining
    tokens (its probability is set to zero), so every melody has exactly ``length`` notes.
    """
    from aigc_lib.sampling import process_logits

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    length = tokenizer.rules.length
    dev = next(model.parameters()).device
    ids = torch.full((n, 1), tokenizer.BOS, dtype=torch.long, device=dev)
    cache = model.new_cache()
    new = ids
    for _ in range(length):
        logits, _ = model(new, cache=cache, last_only=True)
        logits = logits[:, -1].float()
        logits[:, tokenizer.BOS] = float("-inf")  # a melody has no second start
        logits = process_logits(logits, ids, temperature=temperature, top_k=top_k)
        new = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).to(dev)
        ids = torch.cat([ids, new], dim=1)
    return ids[:, 1:].cpu() - 1 + tokenizer.rules.low


# ----------------------------------------------------------------------------- sound
@dataclass(frozen=True)
class ADSR:
    """An amplitude envelope: rise in ``attack`` s, fall to ``sustain`` (a level) in ``decay`` s,
    hold, then fade to silence over the note's last ``release`` s."""

    attack: float = 0.01
    decay: float = 0.1
    sustain: float = 0.6
    release: float = 0.08

    def __post_init__(self):
        if min(self.attack, self.decay, self.release) < 0 or not 0 <= self.sustain <= 1:
            raise ValueError("attack, decay and release must be >= 0 seconds and sustain a level in [0, 1]")


def check_sample_rate(sample_rate) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of samples per second "
                         f"(e.g. 22050 or 44100), got {sample_rate!r}")
    return int(sample_rate)


def midi_to_hz(pitch) -> np.ndarray:
    """f = 440 Hz * 2^((pitch - 69) / 12): equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69) / 12)


def adsr_envelope(n_samples: int, sample_rate: int, adsr: ADSR = ADSR()) -> np.ndarray:
    """The envelope of one note of ``n_samples`` samples, values in [0, 1].

    If the note is shorter than attack + decay + release, the three phases shrink in proportion.
    """
    sample_rate = check_sample_rate(sample_rate)
    a, d, r = (int(round(t * sample_rate)) for t in (adsr.attack, adsr.decay, adsr.release))
    if a + d + r > n_samples and a + d + r > 0:
        scale = n_samples / (a + d + r)
        a, d, r = int(a * scale), int(d * scale), int(r * scale)
    s = n_samples - a - d - r
    return np.concatenate([
        np.linspace(0, 1, a, endpoint=False),
        np.linspace(1, adsr.sustain, d, endpoint=False),
        np.full(s, adsr.sustain),
        np.linspace(adsr.sustain, 0, r),
    ]).astype(np.float32)


def melody_durations(rules: MelodyRules = MelodyRules()) -> list[float]:
    """Beats per note: quarter notes (1 beat), and a half note (2 beats) to close each phrase."""
    return [2.0 if (t + 1) % rules.phrase_length == 0 else 1.0 for t in range(rules.length)]


def synthesize(pitches, durations=None, *, bpm: float = 120, sample_rate: int = 22050,
               adsr: ADSR = ADSR(), harmonics: tuple[float, ...] = (1.0, 0.4, 0.15),
               amplitude: float = 0.5) -> np.ndarray:
    """Render notes as a float32 waveform in [-amplitude, amplitude].

    Note k lasts ``durations[k]`` beats (default 1) of 60 / ``bpm`` seconds; its sound is
    ``env(t) * sum_h a_h sin(2 pi h f t) / sum_h a_h`` with f = :func:`midi_to_hz` and ``a_h`` the
    ``harmonics`` (h = 1, 2, 3, ...): a little brighter than a pure sine.
    """
    sample_rate = check_sample_rate(sample_rate)
    pitches = [int(p) for p in pitches]
    durations = [1.0] * len(pitches) if durations is None else [float(d) for d in durations]
    if len(durations) != len(pitches):
        raise ValueError(f"got {len(pitches)} pitches but {len(durations)} durations; give one per note")
    if not pitches:
        raise ValueError("nothing to synthesize: give at least one pitch")
    if not bpm > 0 or min(durations) <= 0 or not harmonics or not 0 < amplitude <= 1:
        raise ValueError("need bpm > 0, positive durations, at least one harmonic and amplitude in (0, 1]")
    weights = np.asarray(harmonics, dtype=np.float64)
    notes = []
    for pitch, beats in zip(pitches, durations):
        n = int(round(beats * 60 / bpm * sample_rate))
        t = np.arange(n) / sample_rate
        f = midi_to_hz(pitch)
        tone = sum(w * np.sin(2 * np.pi * (h + 1) * f * t) for h, w in enumerate(weights)) / weights.sum()
        notes.append(adsr_envelope(n, sample_rate, adsr) * tone)
    return (amplitude * np.concatenate(notes)).astype(np.float32)


def _pcm16(waveform) -> bytes:
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"waveform must be a non-empty 1-D array of samples (mono), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or infinite samples")
    if np.abs(x).max() > 1:
        raise ValueError(f"samples must lie in [-1, 1] (the largest is {np.abs(x).max():.3g}); "
                         "divide by the peak to normalise instead of clipping")
    return np.round(x * 32767).astype("<i2").tobytes()


def write_wav(path: str | Path, waveform, sample_rate: int) -> Path:
    """Write a mono 16-bit PCM WAV file (samples in [-1, 1]); returns the path."""
    sample_rate = check_sample_rate(sample_rate)
    data = _pcm16(waveform)
    path = Path(path)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(data)
    return path


def wav_bytes(waveform, sample_rate: int) -> bytes:
    """The bytes of the WAV file :func:`write_wav` would write."""
    buffer = io.BytesIO()
    sample_rate = check_sample_rate(sample_rate)
    data = _pcm16(waveform)
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(sample_rate)
        f.writeframes(data)
    return buffer.getvalue()


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit WAV: ``(samples in [-1, 1] as float32, sample_rate)``."""
    with wave.open(str(path), "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise ValueError("read_wav reads mono 16-bit PCM files (as write_wav writes them)")
        frames = f.readframes(f.getnframes())
        return (np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767), f.getframerate()
