"""A small U-Net noise predictor eps_theta(x_t, t, y) for 28 x 28 images (Ho et al., 2020, smaller).

Levels of halving resolution (28 -> 14 -> 7, or 14 -> 7 after folding 2 x 2 patches into channels)
and back, with one skip connection per level between the two halves. Every
residual block adds the embedding of the time step t (sinusoidal features through an MLP) and,
for a conditional model, a learned embedding of the class label, with one extra "no label"
class for classifier-free guidance. Self-attention runs at the resolutions in ``attn_levels``
(by default only the 7 x 7 one, where 49 positions make it cheap).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.models.diffusion import null_labels, timestep_embedding


@dataclass
class UNetConfig:
    in_channels: int = 1
    size: int = 28                      # input height = width; size / patch divisible by 2 ** (levels - 1)
    patch: int = 1                      # > 1: fold patch x patch pixels into channels first (cheaper)
    channels: int = 32                  # channels at the top level
    mult: tuple[int, ...] = (1, 2, 2)   # channels per level = channels * mult
    blocks: int = 1                     # residual blocks per level, in each half
    attn_levels: tuple[int, ...] = (2,)  # levels (0 = top) with self-attention
    heads: int = 4
    n_classes: int = 0                  # > 0: class-conditional, label n_classes = "no label"
    dropout: float = 0.0


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))) + emb(t, y); h = conv(SiLU(GN(h))); return skip(x) + h."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H x W positions of a feature map, with a residual."""

    def __init__(self, c: int, heads: int = 4):
        super().__init__()
        if c % heads:
            raise ValueError(f"channels ({c}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(c), c)
        self.qkv, self.proj = nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t, y): N x C x H x W images (in [-1, 1] scale), steps t (N,), labels y (N,) or None."""

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config if config is not None else UNetConfig(**kwargs)
        levels = len(config.mult)
        if config.patch < 1 or config.size % config.patch or (config.size // config.patch) % 2 ** (levels - 1):
            raise ValueError(f"size {config.size} must be divisible by patch {config.patch} and size / patch by "
                             f"2^{levels - 1} for {levels} levels")
        if config.n_classes < 0 or config.channels < 1 or config.blocks < 1:
            raise ValueError(f"need n_classes >= 0, channels >= 1 and blocks >= 1, got {config}")
        self.n_classes = config.n_classes
        emb = 4 * config.channels
        self.time = nn.Sequential(nn.Linear(config.channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(config.n_classes + 1, emb) if config.n_classes else None
        c_in = config.in_channels * config.patch ** 2
        self.fold, self.unfold = nn.PixelUnshuffle(config.patch), nn.PixelShuffle(config.patch)
        self.stem = nn.Conv2d(c_in, config.channels, 3, padding=1)
        chans = [config.channels * m for m in config.mult]
        self.down, self.up, c = nn.ModuleList(), nn.ModuleList(), config.channels
        for lvl, c_out in enumerate(chans):   # each level: blocks x (ResBlock [+ attention]), then halve H, W
            layers = nn.ModuleList()
            for _ in range(config.blocks):
                layers.append(ResBlock(c, c_out, emb, config.dropout))
                c = c_out
                if lvl in config.attn_levels:
                    layers.append(SelfAttention2d(c, config.heads))
            self.down.append(layers)
        self.downsample = nn.ModuleList(nn.Conv2d(chans[i], chans[i], 3, stride=2, padding=1)
                                        for i in range(levels - 1))
        mid_attn = [SelfAttention2d(c, config.heads)] if levels - 1 in config.attn_levels else []
        self.mid = nn.ModuleList([ResBlock(c, c, emb, config.dropout), *mid_attn])
        for lvl in reversed(range(levels)):   # each level: concatenate the skip, blocks x ResBlock, double H, W
            layers = nn.ModuleList()
            for i in range(config.blocks):
                layers.append(ResBlock(c + (chans[lvl] if i == 0 else 0), chans[lvl], emb, config.dropout))
                c = chans[lvl]
                if lvl in config.attn_levels:
                    layers.append(SelfAttention2d(c, config.heads))
            self.up.append(layers)
            c = chans[lvl - 1] if lvl > 0 else c  # the upsampling conv maps to the level above's width
        self.upsample = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                    nn.Conv2d(chans[i], chans[i - 1], 3, padding=1))
                                      for i in reversed(range(1, levels)))
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, c_in, 3, padding=1))

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        config = self.config
        if x.dim() != 4 or x.shape[1:] != (config.in_channels, config.size, config.size):
            raise ValueError(f"x must have shape N x {config.in_channels} x {config.size} x {config.size}, got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device)
        if t.shape != (len(x),):
            raise ValueError(f"t must hold one time step per image ({len(x)}), got shape {tuple(t.shape)}")
        emb = self.time(timestep_embedding(t, config.channels))
        if self.label is not None:
            emb = emb + self.label(null_labels(y, len(x), self.n_classes, x.device))
        return self.trunk(x, emb)

    def trunk(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The down path, the middle and the up path with its skips, for images ``x`` and the
        embedding ``emb`` of time (and condition) that every residual block reads."""
        h = self.stem(self.fold(x))
        skips = []
        for lvl, layers in enumerate(self.down):
            h = self._run(layers, h, emb)
            skips.append(h)
            if lvl < len(self.downsample):
                h = self.downsample[lvl](h)
        h = self._run(self.mid, h, emb)
        for i, layers in enumerate(self.up):
            h = self._run(layers, torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.unfold(self.out(h))
