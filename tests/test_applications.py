"""Tests of aigc_lib.applications: digits, repair, melody, sound and video, on tiny stand-in models."""
import numpy as np
import pytest
import torch
from torch import nn

from aigc_lib import zoo
from aigc_lib.applications import digits, repair, sound, video
from aigc_lib.applications import melody as mel
from aigc_lib.models.gan import DCGANGenerator
from aigc_lib.models.vae import VAE, VAEConfig


# ----------------------------------------------------------------------------- stand-ins
class PixelGenerator(nn.Module):
    """A 'conditional generator' that draws digit y as a 28 x 28 image whose value is y / 9 (+ tiny z)."""

    z_dim, n_classes = 4, 10

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, z, y):
        return (y.float() / 9 * 2 - 1)[:, None, None, None].expand(len(z), 1, 28, 28) + self.w + 0 * z[:, :1, None, None]

    def to_data(self, x):
        return (x + 1) / 2


class IntensityClassifier(nn.Module):
    """Reads a digit back as round(9 * mean intensity): the exact inverse of PixelGenerator."""

    def predict(self, x):
        return (x.flatten(1).mean(1) * 9).round().long()


# ----------------------------------------------------------------------------- digits
def test_parse_request_known_answer_and_spaces():
    assert digits.parse_request("2026") == [2, 0, 2, 6]
    assert digits.parse_request(" 9 1 ") == [9, 1]


@pytest.mark.parametrize("bad", ["", "   ", "20a6", "3.14", "-1", "٣"])
def test_parse_request_rejects_non_digits(bad):
    with pytest.raises(ValueError, match="digit"):
        digits.parse_request(bad)


def test_parse_request_rejects_non_strings():
    with pytest.raises(ValueError, match="string"):
        digits.parse_request(2026)


def test_render_and_read_back_known_answer():
    G, clf = PixelGenerator(), IntensityClassifier()
    x = digits.render_digits(G, "2026", styles=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 4, 1, 28, 28)
    assert 0 <= x.min() and x.max() <= 1
    result = digits.read_back(clf, x, "2026")
    assert result["accuracy"] == 1.0
    assert result["strings"] == ["2026"] * 3
    assert result["predicted"].shape == (3, 4)


def test_read_back_counts_mistakes():
    G, clf = PixelGenerator(), IntensityClassifier()
    x = digits.render_digits(G, "11", styles=2)
    x[0, 1] = 0.0  # the second digit of the first rendering now reads as 0
    result = digits.read_back(clf, x, "11")
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["strings"] == ["10", "11"]


def test_render_digits_with_the_books_generator_shapes_and_noise():
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=8, width=4, n_classes=10).eval()
    a = digits.render_digits(G, "42", styles=2, generator=torch.Generator().manual_seed(1))
    b = digits.render_digits(G, "42", styles=2, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 2, 1, 28, 28) and torch.equal(a, b)  # same seed, same rendering
    assert not torch.equal(a[0], a[1])  # different styles use different noise


def test_render_digits_errors():
    with pytest.raises(ValueError, match="conditional"):
        digits.render_digits(DCGANGenerator(z_dim=8, width=4), "1")
    with pytest.raises(ValueError, match="styles"):
        digits.render_digits(PixelGenerator(), "1", styles=0)
    with pytest.raises(ValueError, match="digit"):
        digits.render_digits(PixelGenerator(), "")
    with pytest.raises(ValueError, match="styles x 2"):
        digits.read_back(IntensityClassifier(), torch.zeros(1, 3, 1, 28, 28), "12")


def test_truncated_normal_respects_bound():
    z = digits.truncated_normal((1000, 8), 0.5, torch.Generator().manual_seed(0))
    assert z.shape == (1000, 8) and z.abs().max() <= 0.5
    assert z.std() > 0.2  # still random, not collapsed
    with pytest.raises(ValueError, match="truncation"):
        digits.truncated_normal((2, 2), 0.0)


def test_digit_strip_layout():
    x = torch.zeros(2, 3, 1, 4, 5)
    x[:, 1] = 1
    strip = digits.digit_strip(x, gap=1)
    assert strip.shape == (2, 1, 4, 3 * 5 + 2)
    assert strip[..., 6:11].eq(1).all() and strip[..., :6].eq(0).all()
    with pytest.raises(ValueError):
        digits.digit_strip(torch.zeros(3, 1, 4, 5))


# ----------------------------------------------------------------------------- repair
def tiny_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(VAEConfig(arch="mlp", z_dim=4, hidden=32)).eval()


def test_make_mask_known_answers():
    left = repair.make_mask("left", (1, 4, 4))
    assert left.shape == (1, 4, 4) and left[..., :2].eq(0).all() and left[..., 2:].eq(1).all()
    center = repair.make_mask("center", (1, 6, 6), size=2)
    assert center.sum() == 36 - 4 and center[0, 2:4, 2:4].eq(0).all()
    rnd = repair.make_mask("random", (1, 100, 100), p=0.3, generator=torch.Generator().manual_seed(0))
    assert abs((1 - rnd).mean().item() - 0.3) < 0.02
    with pytest.raises(ValueError, match="kind"):
        repair.make_mask("diagonal")


def test_mask_of_the_wrong_shape_raises():
    x = torch.rand(3, 1, 28, 28)
    with pytest.raises(ValueError, match="mask has shape"):
        repair.apply_mask(x, torch.ones(1, 14, 14))
    with pytest.raises(ValueError, match="mask has shape"):
        repair.inpaint_iterative(tiny_vae(), x, torch.ones(2, 1, 28, 28))
    with pytest.raises(ValueError, match="0 \\(missing\\) or 1"):
        repair.apply_mask(x, torch.full((1, 28, 28), 0.5))


def test_masked_mse_known_answer_and_paste():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2).expand(2, 1, 2, 2)
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # right column missing
    assert torch.allclose(repair.masked_mse(x_hat, x, mask), torch.tensor([(4 + 16) / 2.0] * 2))
    pasted = repair.paste(x, mask, x_hat.clone())
    assert torch.equal(pasted[0, 0], torch.tensor([[0.0, 2.0], [0.0, 4.0]]))
    with pytest.raises(ValueError, match="no missing"):
        repair.masked_mse(x_hat, x, torch.ones(1, 2, 2))


def test_inpaint_latent_recovers_a_decodable_image():
    """If the image is exactly decode(z_true), fitting z to half the pixels restores the other half."""
    torch.manual_seed(0)
    W = torch.randn(4, 64)
    decode = lambda z: torch.sigmoid(z @ W).view(-1, 1, 8, 8)  # noqa: E731
    z_true = torch.randn(3, 4)
    x = decode(z_true)
    mask = repair.make_mask("right", (1, 8, 8))
    before = repair.masked_mse(repair.apply_mask(x, mask), x, mask)
    repaired, z, loss = repair.inpaint_latent(decode, x, mask, torch.zeros(3, 4), steps=300, lr=0.1,
                                              prior_weight=0.0, likelihood="gaussian")
    after = repair.masked_mse(repaired, x, mask)
    assert repaired.shape == x.shape and z.shape == (3, 4) and loss.shape == (3,)
    assert (after < 0.05 * before).all()
    assert torch.equal(repaired * mask, x * mask)  # visible pixels untouched


def test_inpaint_latent_errors():
    x, mask = torch.rand(2, 1, 4, 4), torch.ones(1, 4, 4)
    decode = lambda z: torch.zeros(len(z), 1, 4, 4)  # noqa: E731
    with pytest.raises(ValueError, match="likelihood"):
        repair.inpaint_latent(decode, x, mask, torch.zeros(2, 3), likelihood="laplace")
    with pytest.raises(ValueError, match="z0"):
        repair.inpaint_latent(decode, x, mask, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="decode"):
        repair.inpaint_latent(lambda z: torch.zeros(len(z), 1, 2, 2), x, mask, torch.zeros(2, 3), steps=1)


def test_inpaint_vae_and_iterative_shapes_and_visible_pixels():
    vae = tiny_vae()
    x = torch.rand(4, 1, 28, 28)
    mask = repair.make_mask("top", (1, 28, 28))
    for out in (repair.inpaint_iterative(vae, x, mask, n_iter=3), repair.inpaint_vae(vae, x, mask, steps=5)):
        assert out.shape == x.shape
        assert torch.equal(out * mask, x * mask)
        assert 0 <= out.min() and out.max() <= 1
    assert all(p.grad is None and p.requires_grad for p in vae.parameters())  # the model is left as it was


def test_inpaint_vae_improves_after_a_tiny_training_run():
    """A VAE trained a little on one repeated pattern fills its missing half better than a blank."""
    from aigc_lib.training.vae import train_vae

    pattern = torch.zeros(1, 1, 28, 28)
    pattern[..., 6:22, 6:22] = 1.0
    x_train = pattern.repeat(64, 1, 1, 1)
    vae = tiny_vae()
    train_vae(vae, x_train, epochs=15, batch_size=32, lr=3e-3, progress=False)
    mask = repair.make_mask("left", (1, 28, 28))
    x = pattern.repeat(2, 1, 1, 1)
    blank = repair.masked_mse(repair.apply_mask(x, mask), x, mask)
    repaired = repair.masked_mse(repair.inpaint_vae(vae, x, mask, steps=20), x, mask)
    assert (repaired < 0.5 * blank).all()


def test_inpaint_gan_shapes_labels_and_errors():
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=8, width=4, n_classes=10).eval()
    x, mask = torch.rand(2, 1, 28, 28), repair.make_mask("bottom")
    for labels in (None, torch.tensor([3, 4])):
        out = repair.inpaint_gan(G, x, mask, labels=labels, restarts=2, steps=2,
                                 generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and torch.equal(out * mask, x * mask)
    with pytest.raises(ValueError, match="labels"):
        repair.inpaint_gan(G, x, mask, labels=torch.tensor([1]), steps=1)
    with pytest.raises(ValueError, match="restarts"):
        repair.inpaint_gan(G, x, mask, restarts=0)


def test_add_noise_and_denoise():
    x = torch.full((2, 1, 28, 28), 0.5)
    noisy = repair.add_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape and 0 <= noisy.min() and noisy.max() <= 1
    assert abs((noisy - x).std().item() - 0.1) < 0.01
    assert torch.equal(repair.add_noise(x, 0.0), x)
    with pytest.raises(ValueError, match="sigma"):
        repair.add_noise(x, -1.0)
    vae = tiny_vae()
    for steps in (0, 3):
        out = repair.denoise_vae(vae, noisy, steps=steps)
        assert out.shape == x.shape and not torch.equal(out, noisy)


# ----------------------------------------------------------------------------- melody and sound
RULES = mel.MelodyRules()


def test_rule_melodies_follow_every_rule():
    m = mel.rule_melodies(300, RULES, seed=0)
    assert m.shape == (300, RULES.length)
    assert mel.rule_report(m, RULES) == {"in_scale": 1.0, "stepwise": 1.0, "cadence": 1.0, "all_rules": 1.0}
    assert len({tuple(r) for r in m.tolist()}) > 250  # and they are varied
    assert torch.equal(m, mel.rule_melodies(300, RULES, seed=0))  # reproducible


def test_rule_report_known_answer():
    rules = mel.MelodyRules(n_phrases=1, phrase_length=4)
    good = [60, 62, 64, 60]          # C D E C: in key, stepwise, ends on C
    sharp = [60, 61, 62, 60]         # C#: out of key
    leap = [60, 67, 65, 72]          # C -> G is 7 semitones; the end is C5
    no_cadence = [60, 62, 64, 65]    # ends on F
    report = mel.rule_report([good, sharp, leap, no_cadence], rules)
    assert report["in_scale"] == pytest.approx(15 / 16)
    assert report["stepwise"] == pytest.approx(10 / 12)   # two leaps of 7 in `leap`
    assert report["cadence"] == pytest.approx(3 / 4)
    assert report["all_rules"] == pytest.approx(1 / 4)


def test_random_melodies_break_the_rules():
    report = mel.rule_report(mel.random_melodies(500, RULES, torch.Generator().manual_seed(0)), RULES)
    assert report["in_scale"] == pytest.approx(15 / 25, abs=0.02)  # 15 of the 25 pitches are in C major
    assert report["all_rules"] == 0.0


def test_rules_and_report_errors():
    with pytest.raises(ValueError, match="N x 32"):
        mel.rule_report(torch.zeros(3, 31, dtype=torch.long), RULES)
    with pytest.raises(ValueError):
        mel.MelodyRules(low=70, high=60)
    with pytest.raises(ValueError, match="positive"):
        mel.rule_melodies(0)


def test_note_tokenizer_round_trip_and_errors():
    tok = mel.NoteTokenizer(RULES)
    assert tok.vocab_size == 26
    assert tok.encode([60, 84]) == [0, 1, 25]
    melody = mel.rule_melodies(1, RULES)[0].tolist()
    assert tok.decode(tok.encode(melody)) == melody
    with pytest.raises(ValueError, match="range"):
        tok.encode([59])
    with pytest.raises(ValueError, match="token ids"):
        tok.decode([26])


def test_melody_model_learns_the_rules(tmp_path, monkeypatch):
    """A tiny run: the loss falls, and sampled melodies follow the rules far more than random notes."""
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path))
    tiny = dict(n_melodies=200, steps=120, batch_size=16, n_embd=16, n_head=2, n_layer=1)
    model, tok, history = zoo.melody_gpt(progress=False, **tiny)
    loss = history["loss"]
    assert np.mean(loss[:10]) > np.mean(loss[-10:]) + 1.0
    melodies = mel.sample_melodies(model, tok, 64, generator=torch.Generator().manual_seed(0))
    assert melodies.shape == (64, RULES.length)
    assert melodies.min() >= RULES.low and melodies.max() <= RULES.high
    report = mel.rule_report(melodies, RULES)
    rnd = mel.rule_report(mel.random_melodies(64, RULES, torch.Generator().manual_seed(0)), RULES)
    assert report["in_scale"] > rnd["in_scale"] + 0.2 and report["stepwise"] > rnd["stepwise"] + 0.2
    again, _, _ = zoo.melody_gpt(progress=False, **tiny)  # the second call loads the cached model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_melody_model_config_errors():
    with pytest.raises(ValueError, match="unknown setting 'n_layers'.*n_layer"):
        zoo.MelodyGPT().replace(n_layers=3)


def test_midi_to_hz_known_answers():
    assert sound.midi_to_hz(69) == pytest.approx(440.0)
    assert sound.midi_to_hz(81) == pytest.approx(880.0)
    assert sound.midi_to_hz(60) == pytest.approx(261.6256, abs=1e-3)


def test_adsr_envelope_shape_and_levels():
    env = sound.adsr_envelope(1000, 1000, sound.ADSR(attack=0.1, decay=0.1, sustain=0.5, release=0.2))
    assert env.shape == (1000,)
    assert env[0] == 0 and env[99] == pytest.approx(0.99) and env[100] == pytest.approx(1.0)
    assert env[500] == pytest.approx(0.5) and env[-1] == 0
    short = sound.adsr_envelope(50, 1000, sound.ADSR(attack=0.1, decay=0.1, sustain=0.5, release=0.2))
    assert short.shape == (50,) and short.max() <= 1


def test_synthesize_known_frequency_and_length():
    sr = 8000
    wave = sound.synthesize([69], [2.0], bpm=120, sample_rate=sr, harmonics=(1.0,))  # A4 for one second
    assert wave.shape == (sr,) and wave.dtype == np.float32
    assert np.abs(wave).max() <= 0.5 + 1e-6
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)
    melody = sound.synthesize([60, 62, 64], sample_rate=sr, bpm=60)
    assert melody.shape == (3 * sr,)


def test_synthesize_errors():
    with pytest.raises(ValueError, match="sample_rate"):
        sound.synthesize([60], sample_rate=0)
    with pytest.raises(ValueError, match="durations"):
        sound.synthesize([60, 62], [1.0])
    with pytest.raises(ValueError, match="at least one pitch"):
        sound.synthesize([])


def test_write_wav_round_trip(tmp_path):
    sr = 8000
    wave = sound.synthesize([60, 64, 67], sample_rate=sr)
    path = sound.write_wav(tmp_path / "chord.wav", wave, sr)
    back, rate = sound.read_wav(path)
    assert rate == sr and back.shape == wave.shape
    assert np.abs(back - wave).max() < 1 / 32767 + 1e-6
    assert path.read_bytes() == sound.wav_bytes(wave, sr)
    assert path.read_bytes()[:4] == b"RIFF"


@pytest.mark.parametrize("rate", [0, -22050, 2.5, True])
def test_write_wav_rejects_bad_sample_rates(tmp_path, rate):
    with pytest.raises(ValueError, match="sample_rate"):
        sound.write_wav(tmp_path / "x.wav", np.zeros(10), rate)


def test_write_wav_rejects_bad_waveforms(tmp_path):
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        sound.write_wav(tmp_path / "x.wav", np.array([0.0, 1.5]), 8000)
    with pytest.raises(ValueError, match="1-D"):
        sound.write_wav(tmp_path / "x.wav", np.zeros((2, 10)), 8000)
    with pytest.raises(ValueError, match="NaN"):
        sound.write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), 8000)


# ----------------------------------------------------------------------------- video
def test_interpolate_known_answers():
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    line = video.interpolate(z0, z1, 3, "linear")
    assert torch.allclose(line, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    arc = video.interpolate(z0, z1, 3, "slerp")
    assert torch.allclose(arc[1], torch.tensor([2 ** -0.5, 2 ** -0.5]))
    assert torch.allclose(arc.norm(dim=1), torch.ones(3))  # slerp keeps the norm, the line does not
    with pytest.raises(ValueError, match="method"):
        video.interpolate(z0, z1, 3, "cubic")
    with pytest.raises(ValueError, match="n must"):
        video.interpolate(z0, z1, 1)
    with pytest.raises(ValueError, match="same length"):
        video.interpolate(z0, torch.zeros(3), 3)


def test_latent_walk_passes_through_the_keys():
    keys = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    path = video.latent_walk(keys, 4)
    assert path.shape == (12, 5)
    for k in range(3):
        assert torch.allclose(path[4 * k], keys[k], atol=1e-5)
    open_path = video.latent_walk(keys, 4, loop=False, method="linear")
    assert open_path.shape == (9, 5) and torch.allclose(open_path[-1], keys[-1])
    with pytest.raises(ValueError, match="K >= 2"):
        video.latent_walk(keys[:1], 4)


def test_render_frames_and_frame_change():
    path = torch.linspace(0, 1, 11)[:, None]
    frames = video.render_frames(lambda z: z.view(-1, 1, 1, 1).expand(-1, 1, 4, 4), path, batch_size=3)
    assert frames.shape == (11, 1, 4, 4)
    assert torch.allclose(video.frame_change(frames), torch.full((10,), 0.1), atol=1e-6)
    with pytest.raises(ValueError):
        video.render_frames(lambda z: z, path)


def test_gif_round_trip(tmp_path):
    frames = torch.linspace(0, 1, 6).view(6, 1, 1, 1).expand(6, 1, 5, 7).clone()
    path = video.write_gif(tmp_path / "walk.gif", frames, fps=10, scale=3)
    back = video.read_gif(path)
    assert back.shape == (6, 15, 21)
    assert np.allclose(back[:, 0, 0] / 255, frames[:, 0, 0, 0].numpy(), atol=1 / 255)
    html = video.gif_html(path, width=100)
    assert html.startswith('<img src="data:image/gif;base64,') and 'width="100"' in html
    with pytest.raises(ValueError, match="GIF"):
        video.gif_html(b"\x89PNG....")


def test_gif_errors():
    with pytest.raises(ValueError, match="M x C x H x W"):
        video.gif_bytes(torch.zeros(5, 28, 28))
    with pytest.raises(ValueError, match="fps"):
        video.gif_bytes(torch.zeros(2, 1, 4, 4), fps=0)
    with pytest.raises(ValueError, match="no frames"):
        video.gif_bytes(torch.zeros(0, 1, 4, 4))


def test_piano_roll_draws_and_rejects_bad_input():
    import matplotlib
    matplotlib.use("Agg")
    from aigc_lib.plotting import piano_roll

    ax = piano_roll({"a": [60, 62, 64], "b": [67, 65, 64]}, [1.0, 1.0, 2.0], title="t")
    assert len(ax.patches) == 6 and ax.get_xlim()[1] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="durations"):
        piano_roll({"a": [60, 62]}, [1.0])
    with pytest.raises(ValueError, match="at least one"):
        piano_roll({})


def test_melody_model_config_overrides_reach_their_section():
    recipe = zoo.MelodyGPT().replace(data_seed=3, seed=5, n_embd=32)
    assert recipe.data_seed == 3 and recipe.seed == 5 and recipe.model.n_embd == 32
    assert recipe.model.block_size == mel.MelodyRules().length + 1
    assert recipe.model.vocab_size == mel.NoteTokenizer(recipe.rules).vocab_size
    assert recipe.generator_version == mel.GENERATOR_VERSION
    with pytest.raises(ValueError, match="unknown setting"):
        zoo.MelodyGPT().replace(generator=2)
