"""The book's trained models, one recipe each: trained once, cached, the same in every chapter.

Each function below builds its recipe (:mod:`aigc_lib.zoo.recipe`), applies the keyword
overrides by the one rule of :meth:`~aigc_lib.zoo.recipe.Recipe.replace` (``seed=`` among them),
and returns the cached model or trains it::

    model, tokenizer, history = zoo.shakespeare_gpt()           # the pretraining chapter's GPT
    gan, history = zoo.mnist_gan("dcgan", seed=1)               # the same recipe, another seed
    zoo.ShakespeareGPT().replace(n_layer=2).train.steps         # a recipe's settings, untrained

:data:`RECIPES` is the list of the book's trained models; ``python -m aigc_lib.zoo`` prints it
with what each costs to train in the quick profile, and ``python -m aigc_lib.zoo NAME`` trains one
(under ``torchrun``, the language models train with DDP).
"""
from __future__ import annotations

from aigc_lib.zoo.finetune import FINETUNE_METHODS, InstructionGPT, PoemGPT, QuestionDPO
from aigc_lib.zoo.diffusion import MNISTDiffusion, MNISTLatentDiffusion, RingDiffusion, digit_samples
from aigc_lib.zoo.flow import MNISTFlow, RingFlow, RingReflow
from aigc_lib.zoo.images import (FAMILIES, GAN_KINDS, Classifier, FakeDetector, MNISTGAN, MNISTVAE,
                                 generated_digits)
from aigc_lib.zoo.melody import MelodyGPT
from aigc_lib.zoo.llm import LLM_PIECES, LLMPieceGPT
from aigc_lib.zoo.reasoning import ArithmeticGRPO, ArithmeticRewardModel, ArithmeticSFT
from aigc_lib.zoo.recipe import Recipe
from aigc_lib.zoo.reversal import ReversalGPT
from aigc_lib.zoo.ring import RING_KINDS, RingGAN, RingVAE, ring_gans
from aigc_lib.zoo.text2image import MNISTCLIP, TextToImage
from aigc_lib.zoo.text import (BASELINE_ORDER, MEMORIZATION_SIZES, MODERN_SWITCHES, DistilledGPT, ModernShakespeareGPT,
                               ShakespeareGPT, SmallTextGPT,
                               char_tokenizer, shakespeare_ngram)

RECIPES: tuple[type[Recipe], ...] = (Classifier, RingGAN, MNISTGAN, RingVAE, MNISTVAE, RingDiffusion, MNISTDiffusion,
                                     MNISTLatentDiffusion, RingFlow, RingReflow, MNISTFlow, ReversalGPT, ShakespeareGPT, ModernShakespeareGPT, LLMPieceGPT, MelodyGPT, FakeDetector,
                                     SmallTextGPT, DistilledGPT, PoemGPT, InstructionGPT, QuestionDPO,
                                     ArithmeticSFT, ArithmeticRewardModel, ArithmeticGRPO, MNISTCLIP, TextToImage)


def mnist_classifier(progress: bool = True, **overrides):
    """``(classifier, history)``; ``history["test_accuracy"]`` on the test split."""
    return Classifier().replace(**overrides).load(progress)


def mnist_gan(kind: str = "dcgan", progress: bool = True, **overrides):
    """``(gan, history)`` of the GAN chapter's MNIST GAN ``kind`` ("mlp", "dcgan", "cdcgan"); ``gan.G`` samples."""
    return MNISTGAN(kind=kind).replace(**overrides).load(progress)


def mnist_vae(arch: str = "mlp", progress: bool = True, **overrides):
    """``(vae, history)`` of the VAE chapter's MNIST VAE (``arch`` "mlp" or "conv"; e.g. ``z_dim=2``, ``beta=4``)."""
    return MNISTVAE(arch=arch).replace(**overrides).load(progress)


def fake_detector(family: str, progress: bool = True, **overrides):
    """``(detector, history)``: the responsible-AIGC chapter's real-vs-generated classifier for one of ``FAMILIES``."""
    return FakeDetector(family=family).replace(**overrides).load(progress)


def ring_gan(kind: str = "vanilla", progress: bool = True, **overrides):
    """``(gan, history)`` of the GAN chapter's ring GAN ``kind`` (one of ``RING_KINDS``), with snapshots."""
    return RingGAN(kind=kind).replace(**overrides).load(progress)


def ring_vae(progress: bool = True, **overrides):
    """``(vae, history)`` of the VAE chapter's ring VAE (``sigma_x=None`` learns the decoder's noise)."""
    return RingVAE().replace(**overrides).load(progress)


def ring_diffusion(progress: bool = True, **overrides):
    """``(diffusion, history)`` of the diffusion chapter's MLP diffusion model of the ring (samples / ``RING_SCALE``)."""
    return RingDiffusion().replace(**overrides).load(progress)


def mnist_diffusion(progress: bool = True, **overrides):
    """``(diffusion, history)`` of the diffusion chapter's class-conditional U-Net diffusion model of MNIST pixels."""
    return MNISTDiffusion().replace(**overrides).load(progress)


def latent_diffusion(progress: bool = True, **overrides):
    """``(latent_diffusion, history)`` of the diffusion chapter's model on the latents of :func:`mnist_vae`."""
    return MNISTLatentDiffusion().replace(**overrides).load(progress)


def ring_flow(progress: bool = True, **overrides):
    """``(flow, history)`` of the flow-matching chapter's model of the ring (samples / ``RING_SCALE``)."""
    return RingFlow().replace(**overrides).load(progress)


def ring_reflow(progress: bool = True, **overrides):
    """``(flow, history)``: :func:`ring_flow` after one reflow (the flow-matching chapter)."""
    return RingReflow().replace(**overrides).load(progress)


def mnist_flow(progress: bool = True, **overrides):
    """``(flow, history)`` of the flow-matching chapter's U-Net, the diffusion chapter's trained with flow matching."""
    return MNISTFlow().replace(**overrides).load(progress)


def reversal_gpt(progress: bool = True, **overrides):
    """``(model, history)`` of the attention chapter's toy GPT that writes a sequence backwards."""
    return ReversalGPT().replace(**overrides).load(progress)


def shakespeare_gpt(progress: bool = True, **overrides):
    """``(model, tokenizer, history)`` of the pretraining chapter's character GPT (e.g. ``n_layer=2``, ``steps=500``)."""
    return ShakespeareGPT().replace(**overrides).load(progress)


def modern_shakespeare_gpt(progress: bool = True, **overrides):
    """``(model, tokenizer, history)`` of the pretraining chapter's GPT trained with the modern recipe (Muon, RoPE, ...)."""
    return ModernShakespeareGPT().replace(**overrides).load(progress)


def llm_piece_gpt(piece: str = "baseline (LayerNorm, MHA)", progress: bool = True, **overrides):
    """``(model, tokenizer, history)`` of the LLM-architectures chapter's variant ``piece`` (a key of ``LLM_PIECES``)."""
    return LLMPieceGPT().replace(**{**LLM_PIECES[piece], **overrides}).load(progress)


def distilled_gpt(progress: bool = True, **overrides):
    """``(student, tokenizer, history)``: the responsible-AIGC chapter's student distilled from :func:`shakespeare_gpt`."""
    return DistilledGPT().replace(**overrides).load(progress)


def small_text_gpt(progress: bool = True, **overrides):
    """``(model, tokenizer, history)``: the responsible-AIGC chapter's GPT trained for many epochs on a short text."""
    return SmallTextGPT().replace(**overrides).load(progress)


def melody_gpt(progress: bool = True, **overrides):
    """``(model, tokenizer, history)``: the applications chapter's melody GPT."""
    return MelodyGPT().replace(**overrides).load(progress)


def mnist_clip(progress: bool = True, **overrides):
    """``(clip, tokenizer, history)``: the applications chapter's CLIP of captioned digits."""
    return MNISTCLIP().replace(**overrides).load(progress)


def text_to_image(progress: bool = True, **overrides):
    """``(model, tokenizer, history)``: the applications chapter's text-to-image diffusion model;
    ``history["table"]`` holds its evaluation."""
    return TextToImage().replace(**overrides).load(progress)


def catalog() -> list[dict]:
    """One row per trained model of the book: its cache name, chapter (the stem of the notebook that
    trains it, e.g. ``"gan"``: numbers come from the table of contents), quick-profile cost and summary."""
    return [{"recipe": r.__name__, "name": r.name, "chapter": r.chapter, "cost": r.cost,
             "what": (r.__doc__ or "").strip().splitlines()[0]} for r in RECIPES]


def poem_gpt(method: str = "full", progress: bool = True, **overrides):
    """``(model, history)``: the fine-tuning chapter's GPT adapted to the poems by ``method`` (one of ``FINETUNE_METHODS``)."""
    return PoemGPT(method=method).replace(**overrides).load(progress)


def instruction_gpt(progress: bool = True, **overrides):
    """``(model, history)``: the fine-tuning chapter's GPT after supervised fine-tuning on rule-built instructions."""
    return InstructionGPT().replace(**overrides).load(progress)


def question_dpo(progress: bool = True, **overrides):
    """``(model, history)``: the fine-tuning chapter's GPT after DPO towards speeches that open with a question."""
    return QuestionDPO().replace(**overrides).load(progress)


def arithmetic_sft(format: str = "worked", progress: bool = True, **overrides):
    """``(model, history)``: the reasoning chapter's GPT after SFT on the teacher's ``format`` ("direct" or "worked")."""
    return ArithmeticSFT(format=format).replace(**overrides).load(progress)


def arithmetic_reward_model(progress: bool = True, **overrides):
    """``(reward_model, history)``: the reasoning chapter's reward model, with best-of-n against it in the history."""
    return ArithmeticRewardModel().replace(**overrides).load(progress)


def arithmetic_grpo(progress: bool = True, **overrides):
    """``(model, history)``: the reasoning chapter's worked SFT model after GRPO with the verifiable reward."""
    return ArithmeticGRPO().replace(**overrides).load(progress)


__all__ = ["MNISTCLIP", "TextToImage", "mnist_clip", "text_to_image", "ArithmeticGRPO", "ArithmeticRewardModel", "ArithmeticSFT", "arithmetic_grpo",
           "arithmetic_reward_model", "arithmetic_sft", "BASELINE_ORDER", "Classifier", "DistilledGPT", "FakeDetector", "FAMILIES", "FINETUNE_METHODS",
           "GAN_KINDS", "InstructionGPT", "MelodyGPT", "MEMORIZATION_SIZES", "MNISTDiffusion", "MNISTGAN",
           "MNISTFlow", "MNISTLatentDiffusion", "MNISTVAE", "MODERN_SWITCHES", "ModernShakespeareGPT", "LLMPieceGPT", "LLM_PIECES", "PoemGPT", "QuestionDPO", "Recipe", "RECIPES", "ReversalGPT",
           "RING_KINDS", "RingDiffusion", "RingFlow", "RingReflow", "RingGAN", "RingVAE", "ShakespeareGPT", "SmallTextGPT", "catalog",
           "char_tokenizer", "digit_samples", "distilled_gpt", "fake_detector", "generated_digits",
           "instruction_gpt", "latent_diffusion", "melody_gpt", "mnist_classifier", "mnist_diffusion", "mnist_flow",
           "mnist_gan", "mnist_vae", "modern_shakespeare_gpt", "llm_piece_gpt", "poem_gpt", "question_dpo", "reversal_gpt", "ring_diffusion", "ring_flow", "ring_reflow",
           "ring_gan", "ring_gans", "ring_vae", "shakespeare_gpt", "shakespeare_ngram", "small_text_gpt"]
