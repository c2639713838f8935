"""Symbolic music in miniature: rule-based melodies and note tokens (the applications chapter).

The pipeline mirrors how symbolic music models work (e.g. Music Transformer, Huang et al., 2019):
music becomes a sequence of note tokens, an autoregressive model learns p(note_t | notes_<t), and a
synthesizer (:mod:`aigc_lib.applications.sound`) turns sampled notes into sound. The model is a
tiny GPT, :class:`aigc_lib.zoo.melody.MelodyGPT`.

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

**Tokens** (:class:`NoteTokenizer`): one token per MIDI pitch in the range, plus a start token;
:func:`sample_melodies` draws note sequences from a model over them.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch
from torch import nn

from aigc_lib.config import generator, model_device, run_seed
from aigc_lib.sampling import process_logits


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


@torch.no_grad()
def sample_melodies(model: nn.Module, tokenizer: NoteTokenizer, n: int, *, temperature: float = 1.0,
                    top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` melodies sampled from the model, starting from BOS: ``n x length`` MIDI pitches.

    A sampled BOS inside a melody is not a note; it is replaced by resampling from the remaining
    tokens (its probability is set to zero), so every melody has exactly ``length`` notes.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    length = tokenizer.rules.length
    device = model_device(model)
    ids = torch.full((n, 1), tokenizer.BOS, dtype=torch.long, device=device)
    cache = model.new_cache()
    new = ids
    for _ in range(length):
        logits, _ = model(new, cache=cache, last_only=True)
        logits = logits[:, -1].float()
        logits[:, tokenizer.BOS] = float("-inf")  # a melody has no second start
        logits = process_logits(logits, ids, temperature=temperature, top_k=top_k)
        new = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).to(device)
        ids = torch.cat([ids, new], dim=1)
    return ids[:, 1:].cpu() - 1 + tokenizer.rules.low


def melody_durations(rules: MelodyRules = MelodyRules()) -> list[float]:
    """Beats per note: quarter notes (1 beat), and a half note (2 beats) to close each phrase."""
    return [2.0 if (t + 1) % rules.phrase_length == 0 else 1.0 for t in range(rules.length)]
