"""A small CLIP (Radford et al., 2021): a text Transformer and an image encoder in one space.

* :class:`TextEncoder`: token and position embeddings, then the pretraining chapter's pre-LN
  Transformer blocks (:class:`~aigc_lib.models.gpt.Block`, causally masked as in CLIP's text
  encoder), a final LayerNorm; ``forward`` returns every token's state (what a text-to-image
  denoiser attends to) and the state at ``[EOS]`` (the pooled text: CLIP's summary of the prompt);
* :class:`ImageEncoder`: two strided convolutions and a linear layer;
* :class:`CLIP`: both, projected to a shared space and L2-normalised; the logits
  ``s_ij = exp(tau) <f(x_i), g(c_j)>`` of image i and caption j;
* :func:`clip_loss`: the symmetric InfoNCE loss, the mean of the cross-entropies of the rows
  (image -> caption) and of the columns (caption -> image) against the diagonal;
* :func:`clip_score`: ``100 * max(cos(f(x), g(c)), 0)``, how well an image matches its prompt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.models.gpt import Block, GPTConfig


@dataclass
class CLIPConfig:
    vocab_size: int = 48
    max_len: int = 10          # tokens per prompt, [BOS] and [EOS] included
    d_text: int = 64           # width of the text Transformer
    n_layer: int = 2
    n_head: int = 4
    channels: int = 32         # the image encoder's first convolution
    d_embed: int = 64          # the shared space
    eos_id: int = 2            # where the pooled text state is read


class TextEncoder(nn.Module):
    """Token ids (B x L) -> token states (B x L x d_text) and the pooled state at [EOS] (B x d_text)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        gpt = GPTConfig(block_size=config.max_len, vocab_size=config.vocab_size, n_layer=config.n_layer,
                        n_head=config.n_head, n_embd=config.d_text)
        self.tok = nn.Embedding(config.vocab_size, config.d_text)
        self.pos = nn.Embedding(config.max_len, config.d_text)
        self.blocks = nn.ModuleList(Block(gpt) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_text)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ids.dim() != 2 or ids.size(1) != self.config.max_len or ids.dtype != torch.long:
            raise ValueError(f"ids must be B x {self.config.max_len} token ids (torch.long), got "
                             f"shape {tuple(ids.shape)} dtype {ids.dtype}; encode prompts with the tokenizer")
        eos = (ids == self.config.eos_id).int().argmax(1)
        if not (ids[torch.arange(len(ids)), eos] == self.config.eos_id).all():
            raise ValueError("every prompt needs an [EOS] token: encode prompts with the tokenizer")
        h = self.tok(ids) + self.pos(torch.arange(ids.size(1), device=ids.device))
        for block in self.blocks:  # causal: a token's state depends on the tokens up to it
            h = block(h)
        h = self.ln_f(h)
        return h, h[torch.arange(len(ids)), eos]


class ImageEncoder(nn.Module):
    """N x 1 x 28 x 28 images in [0, 1] -> N x d_out features."""

    def __init__(self, channels: int = 32, d_out: int = 64):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1), nn.GELU(),          # 28 -> 14
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),      # 14 -> 7
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.GELU(),
            nn.Flatten(), nn.Linear(2 * c * 49, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"images must be N x 1 x 28 x 28 in [0, 1], got shape {tuple(x.shape)}")
        return self.net(x)


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: (CE(rows, diag) + CE(columns, diag)) / 2 for an N x N logit matrix.

    Row i scores image i against every caption; the matching caption is on the diagonal.
    """
    if logits.dim() != 2 or logits.size(0) != logits.size(1):
        raise ValueError(f"logits must be a square N x N matrix (image i, caption j), got {tuple(logits.shape)}")
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class CLIP(nn.Module):
    """f(x) and g(c), unit vectors in a shared space; ``forward`` gives the N x N logits."""

    def __init__(self, config: CLIPConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config if config is not None else CLIPConfig(**kwargs)
        self.text = TextEncoder(config)
        self.image = ImageEncoder(config.channels, config.d_embed)
        self.text_proj = nn.Linear(config.d_text, config.d_embed, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x), dim=-1)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text(ids)[1]), dim=-1)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        scale = self.log_scale.clamp(max=math.log(100)).exp()  # CLIP caps the scale at 100
        return scale * self.embed_images(x) @ self.embed_text(ids).T

    def loss(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return clip_loss(self(x, ids))


@torch.no_grad()
def clip_score(model: CLIP, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per pair: ``100 * max(cos(f(x_i), g(c_i)), 0)`` (the CLIPScore of Hessel et al., 2021, without its 2.5)."""
    if len(x) != len(ids):
        raise ValueError(f"one prompt per image: got {len(x)} images and {len(ids)} prompts")
    cos = (model.embed_images(x) * model.embed_text(ids)).sum(-1)
    return 100 * cos.clamp_min(0)


@torch.no_grad()
def retrieval_accuracy(model: CLIP, x: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracies for N matching pairs: text -> image (each caption's best image is its own)
    and image -> text."""
    sim = model.embed_images(x) @ model.embed_text(ids).T
    target = torch.arange(len(x))
    return {"text_to_image": (sim.argmax(0) == target).float().mean().item(),
            "image_to_text": (sim.argmax(1) == target).float().mean().item()}
