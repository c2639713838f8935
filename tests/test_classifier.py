"""The book's MNIST classifier: shapes, clear errors, a tiny training run, the cached model."""
import pytest
import torch

from aigc_lib.data import load_mnist
from aigc_lib import zoo
from aigc_lib.models.classifier import MNISTClassifier
from aigc_lib.training.supervised import random_shift, train_classifier


def test_shapes():
    model = MNISTClassifier(n_features=32)
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    assert model.features(x).shape == (4, 32)
    assert (model.features(x) >= 0).all()  # after ReLU
    assert model.predict(x).shape == (4,)


def test_augmentation_keeps_shape_and_range():
    x = torch.rand(6, 1, 28, 28)
    out = random_shift(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(random_shift(x, max_shift=0, max_degrees=0), x, atol=1e-5, rtol=0)


def test_bad_input_raises_clear_errors():
    model = MNISTClassifier()
    with pytest.raises(ValueError, match="N x 1 x 28 x 28"):
        model(torch.rand(4, 28, 28))
    with pytest.raises(ValueError, match="divide uint8"):
        model(torch.zeros(4, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="0..9"):
        train_classifier(model, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 10]), progress=False)


def test_tiny_training_run_lowers_the_loss():
    x, y = load_mnist("train")
    x, y = x[:256], y[:256]
    model = MNISTClassifier(n_features=32)
    loss_before = torch.nn.functional.cross_entropy(model.eval()(x), y).item()
    train_classifier(model, x, y, epochs=3, batch_size=32, augment=False, progress=False)
    loss_after = torch.nn.functional.cross_entropy(model.eval()(x), y).item()
    assert loss_after < 0.5 * loss_before


def test_recipe_builds_the_books_classifier():
    recipe = zoo.Classifier()
    model = recipe.build()
    assert isinstance(model, MNISTClassifier)
    assert model.features(torch.rand(2, 1, 28, 28)).shape == (2, recipe.n_features) == (2, 128)
    small = recipe.replace(n_features=32, epochs=1)
    assert small.build().features(torch.rand(2, 1, 28, 28)).shape == (2, 32)
    assert small.checkpoint_path() != recipe.checkpoint_path()
