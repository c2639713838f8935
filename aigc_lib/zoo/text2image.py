"""The applications chapter's tiny Stable Diffusion: a CLIP trained on captioned MNIST digits, and a
text-conditioned U-Net diffusion model that reads prompts through CLIP's frozen text encoder.

:class:`MNISTCLIP` trains first (it is the text encoder and the judge); :class:`TextToImage`
copies its text encoder into the denoiser, trains the denoiser on (digit, caption) pairs with the
empty prompt dropped in for guidance, and then measures itself once (:func:`evaluate`): for each
caption family, seen and held-out phrasings, at each guidance scale, the share of samples the
book's classifier reads as the asked digit, the attribute accuracy and the CLIP score. The table
is stored with the model in ``history["table"]``, so the chapter quotes it without sampling again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from aigc_lib.config import by_profile, device, generator, model_device, pinned_threads, seed_everything
from aigc_lib.data import load_mnist
from aigc_lib.data.captions import (FAMILIES, AttributeThresholds, WordTokenizer, measure, prompts,
                                    training_captions)
from aigc_lib.models.clip import CLIP, CLIPConfig, clip_score, retrieval_accuracy
from aigc_lib.models.text_unet import TextDiffusion, TextUNet, TextUNetConfig
from aigc_lib.models.unet import UNetConfig
from aigc_lib.training.clip import train_clip
from aigc_lib.training.diffusion import train_diffusion
from aigc_lib.zoo.diffusion import DiffusionTraining, to_unit
from aigc_lib.zoo.images import Classifier
from aigc_lib.zoo.recipe import Recipe

SPLITS = ("seen", "held-out")


def digit_thresholds() -> AttributeThresholds:
    """The attribute tertiles and medians of the training digits (what the captions were made with)."""
    return AttributeThresholds.fit(*load_mnist("train"))


@torch.no_grad()
def retrieval_sets(clip: CLIP, tokenizer: WordTokenizer, n_sets: int = 100, seed: int = 0,
                   template: str = "the digit {w}") -> dict[str, float]:
    """CLIP's top-1 retrieval among 10 held-out (test) digits, one of each class, over ``n_sets``
    random sets: each prompt ``template`` of digit d must find the image of d, and each image its
    prompt. Also the zero-shot accuracy: each test image given the best of the 10 prompts."""
    from aigc_lib.data.captions import WORDS

    x, y = load_mnist("test")
    text = clip.embed_text(tokenizer([template.format(w=w) for w in WORDS]))
    img = clip.embed_images(x)
    g = generator(seed)
    pools = [torch.nonzero(y == d)[:, 0] for d in range(10)]
    t2i = i2t = 0.0
    for _ in range(n_sets):
        pick = torch.stack([p[torch.randint(len(p), (1,), generator=g)] for p in pools])[:, 0]
        sim = img[pick] @ text.T                       # image d x prompt j
        t2i += (sim.argmax(0) == torch.arange(10)).float().mean().item() / n_sets
        i2t += (sim.argmax(1) == torch.arange(10)).float().mean().item() / n_sets
    zero_shot = ((img @ text.T).argmax(1) == y).float().mean().item()
    return {"text_to_image": t2i, "image_to_text": i2t, "zero_shot": zero_shot}


@dataclass
class MNISTCLIP(Recipe):
    """A small CLIP on the captioned MNIST training digits (captions of the seen templates)."""

    name, version = "mnist-clip", 1  # 1: all four ordinal phrasings in training
    chapter, cost = "applications", "20-35 s"
    smoke_settings = dict(epochs=1, clip_batch=16)
    model: CLIPConfig = field(default_factory=lambda: by_profile(
        quick=CLIPConfig(d_text=64, n_layer=2, n_head=4, channels=32, d_embed=64),
        full=CLIPConfig(d_text=128, n_layer=4, n_head=4, channels=64, d_embed=128)))
    # named apart from the diffusion model's settings, which a TextToImage.replace(...) would also set
    epochs: int = field(default_factory=lambda: by_profile(quick=25, full=40))
    clip_batch: int = 256
    clip_lr: float = 2e-3
    seed: int = 0
    threads: int = 0  # 0: PyTorch's default (all free cores)

    def build(self) -> CLIP:
        seed_everything(self.seed)
        return CLIP(self.model).to(device())

    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer(self.model.max_len)

    def fit(self, model: CLIP, progress: bool) -> dict:
        x, y = load_mnist("train")
        attrs = digit_thresholds().label(x, y)
        start = time.perf_counter()
        steps = self.epochs * -(-len(x) // self.clip_batch)
        with pinned_threads(self.threads):
            history = train_clip(model, x, y, attrs, self.tokenizer(), steps=steps, batch_size=self.clip_batch,
                                 lr=self.clip_lr, seed=self.seed, progress=progress)
        with torch.no_grad():
            history["retrieval"] = retrieval_sets(model.cpu(), self.tokenizer())
        model.to(device())
        return history

    def result(self, model, history):
        return model, self.tokenizer(), history


@torch.no_grad()
def generate(model: TextDiffusion, tokenizer: WordTokenizer, texts: list[str], seed: int = 0,
             guidance: float = 1.5, steps: int = 20, batch_size: int = 250,
             guidance_rescale: float | None = None) -> torch.Tensor:
    """One image per prompt in [0, 1] (N x 1 x 28 x 28), DDIM with ``steps`` steps, noise from
    ``generator(seed)``; ``guidance_rescale`` replaces the model's phi for this call (0: plain guidance)."""
    ids = tokenizer(list(texts)).to(model_device(model))
    own = model.guidance_rescale
    if guidance_rescale is not None:
        if not 0 <= guidance_rescale <= 1:
            raise ValueError(f"guidance_rescale must lie in [0, 1] (0: plain guidance), got {guidance_rescale}")
        model.guidance_rescale = guidance_rescale
    try:
        x = model.sample(len(texts), steps=steps, y=ids, guidance=guidance, generator=generator(seed),
                         batch_size=batch_size)
    finally:
        model.guidance_rescale = own
    return to_unit(x)


@torch.no_grad()
def evaluate(model: TextDiffusion, tokenizer: WordTokenizer, clip: CLIP, classifier, thresholds: AttributeThresholds,
             scales: dict[float, int], steps: int = 20, seed: int = 0,
             families: tuple[str, ...] = FAMILIES, progress: bool = False) -> list[dict]:
    """One row per (family, split, guidance scale w): ``scales[w]`` prompts (the first of the same
    list at every scale), one sample each, judged three ways.

    ``digit``: the share the classifier reads as the asked digit; ``attribute``: for attribute
    prompts, the share on the asked side of the class median (chance 0.5); ``clip_score``: the
    mean :func:`~aigc_lib.models.clip.clip_score` against the prompt.
    """
    rows = []
    cells = [(f, s) for f in families for s in SPLITS if not (f == "arithmetic" and s == "seen")]
    for k, (family, split) in enumerate(tqdm(cells, desc="evaluating", disable=not progress)):
        every = prompts(family, split, max(scales.values()), generator(seed + k))
        for w, n in scales.items():
            batch = every[:n]
            texts = [p[0] for p in batch]
            digits = torch.tensor([p[1] for p in batch])
            x = generate(model, tokenizer, texts, seed=seed + 100 * k + 1, guidance=w, steps=steps)
            row = {"family": family, "split": split, "guidance": w, "n": n,
                   "digit": (classifier.predict(x) == digits).float().mean().item(),
                   "clip_score": clip_score(clip, x, tokenizer(texts)).mean().item()}
            if family == "attribute":
                row.update(attribute_agreement(x, batch, thresholds))
            rows.append(row)
    return rows


def attribute_agreement(x: torch.Tensor, batch: list[tuple[str, int, dict]], thresholds: AttributeThresholds) -> dict:
    """For one-attribute prompts: the share of images on the asked side of their class median
    (``attribute``, and per attribute in ``attribute_by``), and the mean ink mass, relative to the
    class median, of the images asked to be thick and of those asked to be thin."""
    digits = torch.tensor([p[1] for p in batch])
    measured = measure(x)
    ok, by, ink = [], {}, {0: [], 1: []}
    for i, (_, d, attrs) in enumerate(batch):
        (name, value), = attrs.items()
        agree = bool(thresholds.agrees(x[i:i + 1], digits[i:i + 1], name, value)[0])
        ok.append(agree)
        by.setdefault(name, []).append(agree)
        if name == "thickness":
            ink[value].append((measured["thickness"][i] / thresholds.median["thickness"][d]).item())
    mean = lambda v: sum(v) / len(v) if v else float("nan")
    return {"attribute": mean(ok), "attribute_by": {k: mean(v) for k, v in by.items()},
            "ink_thick": mean(ink[1]), "ink_thin": mean(ink[0])}


@dataclass
class TextToImage(Recipe):
    """A text-conditioned U-Net diffusion model of MNIST with CLIP's frozen text encoder."""

    # version 1: all four ordinal phrasings in training; 2: new held-out ordinal templates (the stored table)
    name, version = "text2image-diffusion", 2
    chapter, cost = "applications", "2.5-3.5 min training, 1 min evaluation, after mnist-clip"
    smoke_settings = dict(steps=3, batch_size=16, eval_n=4, sweep_n=2, captions_per_image=1)
    net: TextUNetConfig = field(default_factory=lambda: TextUNetConfig(
        unet=by_profile(quick=UNetConfig(channels=32, patch=2, mult=(1, 2), attn_levels=(1,)),
                        full=UNetConfig(channels=64, patch=1, mult=(1, 2, 2), blocks=2, attn_levels=(2,))),
        cross_levels=by_profile(quick=(1,), full=(1, 2))))
    clip: MNISTCLIP = field(default_factory=MNISTCLIP)
    T: int = 1000
    schedule: str = "squaredcos_cap_v2"
    prediction: str = "v"  # what the network predicts: "eps" or "v"
    captions_per_image: int = 4
    train: DiffusionTraining = field(default_factory=lambda: by_profile(
        quick=DiffusionTraining(steps=1800, batch_size=64, lr=2e-3, p_uncond=0.1, ema_decay=0.995),
        full=DiffusionTraining(steps=30_000, batch_size=128, lr=5e-4, p_uncond=0.1, ema_decay=0.9995)))
    guidance: float = 1.5  # the scale the chapter's table reports, with eval_n prompts per cell
    guidance_rescale: float = 0.7  # phi of Lin et al. (2024), their recommended value; 0: plain guidance
    eval_n: int = field(default_factory=lambda: by_profile(quick=200, full=500))
    sweep: tuple[float, ...] = (1.0, 3.0, 6.0)  # the guidance sweep, with sweep_n prompts per cell
    sweep_n: int = field(default_factory=lambda: by_profile(quick=40, full=200))
    eval_steps: int = 20

    def __post_init__(self):
        if self.net.text != self.clip.model:
            self.net = TextUNetConfig(self.net.unet, self.clip.model, self.net.cross_levels, self.net.pooled)

    def build(self) -> TextDiffusion:
        seed_everything(self.train.seed)
        tokenizer = self.clip.tokenizer()
        net = TextUNet(self.net)
        return TextDiffusion(net, tokenizer(""), self.T, self.schedule, self.prediction,
                             self.guidance_rescale).to(device())

    def fit(self, model: TextDiffusion, progress: bool) -> dict:
        clip, tokenizer, _ = self.clip.load(progress=progress)
        model.net.text.load_state_dict(clip.text.state_dict())  # the frozen text encoder
        x, y = load_mnist("train")
        thresholds = digit_thresholds()
        attrs = thresholds.label(x, y)
        g = generator(self.train.seed + 7)
        texts = [c for _ in range(self.captions_per_image) for c in training_captions(y, attrs, g)]
        ids = tokenizer(texts)
        start = time.perf_counter()
        history = train_diffusion(model, (2 * x - 1).repeat(self.captions_per_image, 1, 1, 1), ids,
                                  **vars(self.train), progress=progress, desc="text-to-image diffusion")
        history["diffusion_seconds"] = time.perf_counter() - start  # load_or_train adds train_seconds: all of fit
        classifier, _ = Classifier().load(progress=False)
        start = time.perf_counter()
        history["table"] = evaluate(model, tokenizer, clip.to(model_device(model)), classifier, thresholds,
                                    {self.guidance: self.eval_n, **{w: self.sweep_n for w in self.sweep}},
                                    steps=self.eval_steps, progress=progress)
        history["eval_seconds"] = time.perf_counter() - start
        return history

    def result(self, model, history):
        return model, self.clip.tokenizer(), history
