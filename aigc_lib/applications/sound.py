"""Sound: notes rendered as a waveform, and WAV files (the applications chapter).

:func:`synthesize` renders notes as sine waves with a few harmonics, each shaped by an ADSR
envelope (attack, decay, sustain, release); :func:`wav_bytes` and :func:`write_wav` encode 16-bit
PCM with the standard library's ``wave`` module, :func:`read_wav` reads it back.
"""
from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


def wav_bytes(waveform, sample_rate: int) -> bytes:
    """A mono 16-bit PCM WAV file (samples in [-1, 1]) as bytes, e.g. for an audio player in a notebook."""
    sample_rate = check_sample_rate(sample_rate)
    data = _pcm16(waveform)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(sample_rate)
        f.writeframes(data)
    return buffer.getvalue()


def write_wav(path: str | Path, waveform, sample_rate: int) -> Path:
    """Write :func:`wav_bytes` to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(wav_bytes(waveform, sample_rate))
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit WAV: ``(samples in [-1, 1] as float32, sample_rate)``."""
    with wave.open(str(path), "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise ValueError("read_wav reads mono 16-bit PCM files (as write_wav writes them)")
        frames = f.readframes(f.getnframes())
        return (np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767), f.getframerate()
