"""The book's models of the 8-Gaussian ring: the GAN chapter's GANs and the VAE chapter's VAE."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from tqdm.auto import tqdm

from aigc_lib.config import by_profile, device, generator, pinned_threads, seed_everything
from aigc_lib.data import ring
from aigc_lib.models.gan import MLPDiscriminator, MLPGenerator
from aigc_lib.models.vae import VAE, VAEConfig
from aigc_lib.training.gan import GAN, GANTrainConfig, train_gan
from aigc_lib.training.vae import train_vae
from aigc_lib.zoo.recipe import Recipe

RING_KINDS = ("vanilla", "pacgan", "wgan-gp")


@dataclass
class RingData:
    n: int = 20_000
    k: int = 8
    radius: float = 2.0
    std: float = 0.05


@dataclass
class RingGAN(Recipe):
    """An MLP GAN on the 8-Gaussian ring: vanilla, PacGAN or WGAN-GP.

    ``kind`` is "vanilla", "pacgan" (D judges pairs) or "wgan-gp".
    The three see the same number of real samples, ``steps * n_critic * batch_size`` (768,000 in
    the quick profile), so that a comparison of them is not a comparison of budgets: PacGAN's
    256-sample batches are 128 packs, and WGAN-GP takes a fifth of the generator steps with 5
    critic steps each (and the small penalty weight its authors use for 2-D toys).
    """

    name, variant, version = "ring-gan", "kind", 2
    chapter, cost = "gan", "20 s each, on one core"
    smoke_settings = dict(steps=24, snapshot_every=2)  # 13 snapshots: the GAN chapter plots the 12th
    kind: str = "vanilla"
    z_dim: int = 2
    hidden: int = 128
    depth: int = 3
    data: RingData = field(default_factory=RingData)
    train: GANTrainConfig | None = None  # default: the chapter's settings for this kind

    def __post_init__(self):
        if self.kind not in RING_KINDS:
            raise ValueError(f"kind must be one of {RING_KINDS}, got {self.kind!r}")
        if self.train is None:
            steps = by_profile(quick=3000, full=10_000)
            self.train = GANTrainConfig(steps=steps, batch_size=256, lr_g=1e-3, lr_d=1e-3, lr_decay=True,
                                        snapshot_every=100, snapshot_n=1000)
            if self.kind == "pacgan":
                self.train.pack = 2
            elif self.kind == "wgan-gp":
                self.train = GANTrainConfig(**{**vars(self.train), "loss": "wgan-gp", "steps": steps // 5,
                                               "betas": (0.5, 0.9), "n_critic": 5, "gp_weight": 0.1,
                                               "snapshot_every": 20})

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.kind}"

    def build(self) -> GAN:
        seed_everything(self.train.seed)
        return GAN(MLPGenerator(self.z_dim, (2,), self.hidden, self.depth),
                   MLPDiscriminator((2 * self.train.pack,), self.hidden, self.depth)).to(device())

    def fit(self, gan: GAN, progress: bool) -> dict:
        x = ring(**vars(self.data), generator=generator(self.train.seed))
        with pinned_threads(1):  # tiny MLPs: one thread is faster, and the run is the same on any CPU
            return train_gan(gan.G, gan.D, x, **vars(self.train), progress=progress, desc=f"ring {self.kind}")


def _load_ring_gan(recipe: RingGAN) -> None:
    recipe.load(progress=False)


def ring_gans(kinds=RING_KINDS, seeds=(0, 1, 2), workers: int = 2) -> dict[tuple[str, int], tuple[GAN, dict]]:
    """``{(kind, seed): (gan, history)}`` for every kind and seed.

    Each ring GAN trains on one thread, so the runs that are not cached yet train ``workers`` at a
    time in separate processes; the results are the same as training them one by one.
    """
    recipes = {(k, s): RingGAN(kind=k).replace(seed=s) for k in kinds for s in seeds}
    missing = [r for r in recipes.values() if not r.is_cached()]
    if workers > 1 and len(missing) > 1:
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=get_context("spawn")) as pool:
            for _ in tqdm(pool.map(_load_ring_gan, missing), total=len(missing), desc="ring GANs"):
                pass
    return {key: r.load(progress=False) for key, r in recipes.items()}


@dataclass
class RingVAE(Recipe):
    """An MLP VAE with a Gaussian likelihood on the 8-Gaussian ring.

    ``model.sigma_x`` fixes the std of p(x|z); ``None`` learns it, which on this data tends to
    collapse to a broad Gaussian that ignores z (posterior collapse; see the VAE chapter's exercises).
    """

    name = "ring-vae"
    chapter, cost = "vae", "8 s"
    smoke_settings = dict(epochs=2)
    data: RingData = field(default_factory=lambda: RingData(n=4000))
    model: VAEConfig = field(default_factory=lambda: VAEConfig(
        arch="mlp", x_shape=(2,), z_dim=2, hidden=128, n_layers=2, likelihood="gaussian", sigma_x=0.05))
    epochs: int = field(default_factory=lambda: by_profile(quick=100, full=200))
    batch_size: int = 100
    lr: float = 3e-3
    seed: int = 0

    def build(self) -> VAE:
        return VAE(self.model)

    def fit(self, model: VAE, progress: bool) -> dict:
        x = ring(**vars(self.data), generator=generator(10_000 + self.seed))
        return train_vae(model, x, dynamic_binarization=False, epochs=self.epochs, batch_size=self.batch_size,
                         lr=self.lr, seed=self.seed, progress=progress)
