"""The responsible-AIGC chapter's measurements: verbatim extraction, generated-image detection, memorization probes."""
import pytest
import torch

from aigc_lib import zoo
from aigc_lib.metrics.image import detection_accuracy
from aigc_lib.metrics.text import probe_starts, verbatim_lengths
from aigc_lib.models.classifier import MNISTClassifier
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.training.lm import LMTrainConfig, train_lm
from aigc_lib.training.supervised import train_classifier


def test_verbatim_lengths_of_a_model_that_learned_to_count():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=10, block_size=16, n_layer=1, n_head=2, n_embd=32, dropout=0.0))
    counting = torch.arange(3000) % 10  # 0 1 2 ... 9 0 1 ...: every next token is determined
    starts = torch.arange(0, 200, 7)
    before = verbatim_lengths(model, counting, starts, prefix_length=8, n_new=8)
    cfg = LMTrainConfig(steps=150, batch_size=16, block_size=16, lr=3e-3, warmup_steps=10, eval_interval=150, eval_batches=2)
    train_lm(model, counting.to(torch.uint8), counting.to(torch.uint8), cfg, progress=False)
    after = verbatim_lengths(model, counting, starts, prefix_length=8, n_new=8)
    assert after.shape == (len(starts),) and after.min() >= 0 and after.max() <= 8
    assert (after == 8).all() and before.float().mean() < 8  # the trained model writes the sequence back
    shuffled = torch.randint(10, (3000,), generator=torch.Generator().manual_seed(1))
    assert verbatim_lengths(model, shuffled, starts, prefix_length=8, n_new=8).float().mean() < 2
    with pytest.raises(ValueError, match="inside the text"):
        verbatim_lengths(model, counting, [2995], prefix_length=8, n_new=8)
    with pytest.raises(ValueError, match="1-D"):
        verbatim_lengths(model, counting[None], starts)


def test_probe_starts_skip_continuations_of_spaces():
    from aigc_lib.data import load_shakespeare
    from aigc_lib.tokenizers import CharTokenizer

    tok = CharTokenizer(load_shakespeare().vocab)
    ids = torch.tensor(tok.encode("a" * 100 + " " * 200 + "b" * 100))
    starts = probe_starts(ids, span=16, n_new=8, n=50, g=torch.Generator().manual_seed(0))
    assert len(starts) > 0
    for s in starts.tolist():
        assert tok.decode(ids[s + 8:s + 16].tolist()).count(" ") <= 4
    with pytest.raises(ValueError, match="n_chars"):
        zoo.SmallTextGPT().replace(n_chars=10)


class Stub:
    def __init__(self, labels):
        self.labels = labels

    def predict(self, x):
        return self.labels[: len(x)]


def test_detection_accuracy_counts_each_side():
    real, fake = torch.zeros(4, 1, 28, 28), torch.ones(2, 1, 28, 28)
    det = Stub(torch.tensor([0, 0, 1, 1]))  # calls half the real digits real, and every fake... real/fake alike
    acc = detection_accuracy(det, real, fake)
    assert acc["real"] == 0.5 and acc["fake"] == 0.0 and acc["balanced"] == 0.25
    with pytest.raises(ValueError, match="at least one"):
        detection_accuracy(det, real[:0], fake)
    with pytest.raises(ValueError, match="family"):
        zoo.FakeDetector(family="diffusion?")
    with pytest.raises(ValueError, match="family"):
        zoo.generated_digits("BigGAN", 4)


def test_a_two_class_detector_learns_to_separate_real_from_fake():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 1, 28, 28, generator=g) * 0.5  # "real": dim images
    fake = 0.5 + torch.rand(200, 1, 28, 28, generator=g) * 0.5  # "generated": bright ones
    model = MNISTClassifier(n_classes=2)
    assert model(real[:3]).shape == (3, 2)
    y = torch.cat([torch.zeros(200), torch.ones(200)]).long()
    train_classifier(model, torch.cat([real, fake]), y, epochs=1, augment=False, progress=False)
    assert detection_accuracy(model, real, fake)["balanced"] > 0.95
    with pytest.raises(ValueError, match="0..1"):
        train_classifier(model, real[:2], torch.tensor([0, 2]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="n_classes"):
        MNISTClassifier(n_classes=1)


def test_memorization_and_detector_recipes():
    small = zoo.SmallTextGPT().replace(n_chars=2000, steps=100, n_layer=2)
    assert small.n_chars == 2000 and small.train.steps == 100 and small.model.n_layer == 2
    assert small.train.block_size == small.model.block_size  # the pretraining chapter's recipe
    for size in zoo.MEMORIZATION_SIZES.values():  # the responsible-AIGC chapter's two models are valid overrides
        assert zoo.SmallTextGPT().replace(**size).model.n_embd == size["n_embd"]
    detector = zoo.FakeDetector(family="VAE")
    assert detector.build().out.out_features == 2
    assert detector.to_dict()["generator"] == zoo.MNISTVAE().to_dict()  # retrained when its generator changes
    assert zoo.FakeDetector(family="MLP GAN").to_dict()["generator"] == zoo.MNISTGAN(kind="mlp").to_dict()
    assert zoo.FakeDetector(family="DCGAN").checkpoint_path() != detector.checkpoint_path()
    assert set(zoo.FAMILIES) == {"DCGAN", "MLP GAN", "VAE"}
