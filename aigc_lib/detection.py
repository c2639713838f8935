"""Telling generated digits from real ones: a detector per generator family, and how far it transfers.

A detector is the book's MNIST classifier with two outputs (0 = real, 1 = generated), trained on
real training digits against samples of one generator. Tested on held-out real digits and on
fresh samples, of its own family and of the others, it shows what Wang et al. (2020) found for
photographs: generated images carry traces of the network that made them, and a detector learns
those traces, which transfer to some generators and not to others.
"""
from __future__ import annotations

import torch

FAMILIES = ("DCGAN", "MLP GAN", "VAE")


def generated_digits(family: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples (N x 1 x 28 x 28 in [0, 1]) of one of the book's cached MNIST generators.

    ``"DCGAN"`` and ``"MLP GAN"`` are chapter 2's generators; ``"VAE"`` is chapter 3's MLP VAE
    (the decoder's Bernoulli means ``E[x | z]``, the images chapter 3 shows and scores).
    """
    from aigc_lib.config import generator
    from aigc_lib.training.gan import mnist_dcgan, mnist_mlp_gan
    from aigc_lib.training.vae import mnist_vae

    models = {"DCGAN": mnist_dcgan, "MLP GAN": mnist_mlp_gan, "VAE": mnist_vae}
    if family not in models:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return models[family]().sample(n, generator=generator(seed)).cpu()


@torch.no_grad()
def detection_accuracy(detector, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """Share of ``real`` called real, of ``fake`` called generated, and their mean (balanced accuracy)."""
    if len(real) == 0 or len(fake) == 0:
        raise ValueError("need at least one real and one generated image")
    real_ok = (detector.predict(real) == 0).float().mean().item()
    fake_ok = (detector.predict(fake) == 1).float().mean().item()
    return {"real": real_ok, "fake": fake_ok, "balanced": (real_ok + fake_ok) / 2}


def detector_config(family: str) -> dict:
    """Everything that defines the cached detector for one family (its cache key)."""
    from aigc_lib.training.gan import mnist_gan_config
    from aigc_lib.training.vae import mnist_vae_config

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    source = mnist_vae_config() if family == "VAE" else mnist_gan_config("dcgan" if family == "DCGAN" else "mlp")
    return {"family": family, "generator": source, "model": {"n_features": 128, "dropout": 0.3, "n_classes": 2},
            "train": {"epochs": 2, "batch_size": 64, "lr": 2e-3, "augment": False, "seed": 0},
            "fake_seed": 100}


def fake_detector(family: str, progress: bool = True):
    """A real-vs-generated detector trained on the train split's real digits and as many ``family`` samples.

    Returns ``(detector, history)``, cached; ``history["train_seconds"]`` is the training time.
    """
    import time

    from aigc_lib.cache import load_or_train
    from aigc_lib.data import load_mnist
    from aigc_lib.models.classifier import MNISTClassifier, train_classifier

    cfg = detector_config(family)

    def fit(model):
        x_real, _ = load_mnist("train")
        x_fake = generated_digits(family, len(x_real), seed=cfg["fake_seed"])
        x = torch.cat([x_real, x_fake])
        y = torch.cat([torch.zeros(len(x_real)), torch.ones(len(x_fake))]).long()
        start = time.perf_counter()
        history = train_classifier(model, x, y, **cfg["train"], progress=progress)
        history["train_seconds"] = time.perf_counter() - start
        return history

    model, history = load_or_train("fake-detector", cfg, lambda: MNISTClassifier(**cfg["model"]), fit)
    return model.eval(), history
