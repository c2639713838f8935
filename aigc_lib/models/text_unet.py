"""A text-conditioned U-Net denoiser eps_theta(x_t, t, c): the diffusion chapter's U-Net that reads
a prompt through cross-attention, as Stable Diffusion's does (Rombach et al., 2022).

* :class:`CrossAttention`: queries from the image positions, keys and values from the text
  encoder's token states: ``softmax(Q K^T / sqrt(d)) V`` with ``Q = h W_Q`` (image) and
  ``K = c W_K``, ``V = c W_V`` (text); padding tokens are masked out. Its weights have the layout
  of ``diffusers``' ``Attention(query_dim, cross_attention_dim, heads, dim_head)`` (tested equal);
* :class:`CrossAttention2d`: the same over the H x W positions of a feature map, with a residual;
  ``weights`` holds the attention of every image position to every prompt token after a forward
  with ``record = True``;
* :class:`TextUNet`: :class:`~aigc_lib.models.unet.UNet` (unconditional) plus cross-attention
  after each residual block of the levels in ``cross_levels`` and in the middle, and the pooled
  prompt added to the time embedding (as SDXL and SD3 add CLIP's pooled text). The text encoder
  (:class:`~aigc_lib.models.clip.TextEncoder`) is part of the module and frozen, as Stable
  Diffusion freezes CLIP's;
* :class:`TextDiffusion`: :class:`~aigc_lib.models.diffusion.Diffusion` whose condition ``y`` is
  token ids; the empty prompt ``[BOS] [EOS]`` is the unconditional input of classifier-free
  guidance, dropped in during training with probability ``p_uncond``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lib.models.attention import scaled_dot_product_attention
from aigc_lib.models.clip import CLIPConfig, TextEncoder
from aigc_lib.models.diffusion import Diffusion, timestep_embedding
from aigc_lib.models.unet import ResBlock, UNet, UNetConfig, _groups


class CrossAttention(nn.Module):
    """``Attention(h W_Q, c W_K, c W_V) W_O`` over ``heads`` heads of ``dim_head`` dimensions.

    ``x``: B x N x query_dim (image positions), ``context``: B x L x context_dim (token states),
    ``mask``: B x L booleans, True for tokens that may be attended to. Returns B x N x query_dim.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int = 4, dim_head: int = 16):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        self.record, self.weights = False, None

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        B, T, _ = z.shape
        return z.view(B, T, self.heads, self.dim_head).transpose(1, 2)  # B x heads x T x dim_head

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or context.dim() != 3 or len(x) != len(context):
            raise ValueError(f"x must be B x N x C and context B x L x C_text with the same B, got "
                             f"{tuple(x.shape)} and {tuple(context.shape)}")
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(context)), self._heads(self.to_v(context))
        m = None if mask is None else mask[:, None, None, :]  # broadcast over heads and queries
        if self.record:  # the written-out attention of the attention chapter, keeping the maps
            out, self.weights = scaled_dot_product_attention(q, k, v, m, return_weights=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        B, _, N, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(B, N, -1))


class CrossAttention2d(nn.Module):
    """x + CrossAttention(GN(x) as HW positions, context): a feature map reads the prompt."""

    def __init__(self, c: int, context_dim: int, heads: int = 4):
        super().__init__()
        if c % heads:
            raise ValueError(f"channels ({c}) must be divisible by heads ({heads})")
        self.norm = nn.GroupNorm(_groups(c), c)
        self.attn = CrossAttention(c, context_dim, heads, c // heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.norm(x).flatten(2).transpose(1, 2)  # N x HW x C: one query per position
        return x + self.attn(q, context, mask).transpose(1, 2).reshape(n, c, h, w)


@dataclass
class TextUNetConfig:
    unet: UNetConfig = field(default_factory=lambda: UNetConfig(channels=32, patch=2, mult=(1, 2),
                                                                attn_levels=(1,)))
    text: CLIPConfig = field(default_factory=CLIPConfig)
    cross_levels: tuple[int, ...] = (0, 1)  # levels (0 = top) with cross-attention to the prompt
    pooled: bool = True                     # add the pooled prompt to the time embedding


class TextUNet(UNet):
    """eps_theta(x_t, t, ids): N x C x H x W images, steps t (N,), prompts as token ids (N x L)."""

    def __init__(self, config: TextUNetConfig | None = None):
        config = config if config is not None else TextUNetConfig()
        if config.unet.n_classes:
            raise ValueError("the text U-Net reads prompts, not labels: use a UNetConfig with n_classes=0")
        super().__init__(config.unet)
        self.text_config = config
        self.text = TextEncoder(config.text).requires_grad_(False)  # frozen, as Stable Diffusion's CLIP
        d, emb = config.text.d_text, 4 * config.unet.channels
        self.pool = nn.Linear(d, emb) if config.pooled else None
        levels = len(config.unet.mult)
        heads = config.unet.heads

        def add_cross(layers: nn.ModuleList) -> nn.ModuleList:  # after every residual block
            out = nn.ModuleList()
            for layer in layers:
                out.append(layer)
                if isinstance(layer, ResBlock):
                    out.append(CrossAttention2d(layer.conv2.out_channels, d, heads))
            return out

        for lvl in config.cross_levels:
            if not 0 <= lvl < levels:
                raise ValueError(f"cross_levels must lie in 0 .. {levels - 1}, got {config.cross_levels}")
            self.down[lvl] = add_cross(self.down[lvl])
            self.up[levels - 1 - lvl] = add_cross(self.up[levels - 1 - lvl])
        if levels - 1 in config.cross_levels:
            self.mid = add_cross(self.mid)

    @property
    def cross_attentions(self) -> list[CrossAttention]:
        return [m.attn for m in self.modules() if isinstance(m, CrossAttention2d)]

    def train(self, mode: bool = True):
        super().train(mode)
        self.text.eval()  # frozen: no dropout, no statistics updated
        return self

    def _run(self, layers, h, emb):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, CrossAttention2d):
                h = layer(h, self._context, self._mask)
            else:
                h = layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("the text U-Net needs prompts as token ids; the empty prompt is the unconditional input")
        with torch.no_grad():
            states, pooled = self.text(y)
        self._context, self._mask = states, y != 0  # token id 0 is padding
        config = self.config
        if x.dim() != 4 or x.shape[1:] != (config.in_channels, config.size, config.size):
            raise ValueError(f"x must have shape N x {config.in_channels} x {config.size} x {config.size}, got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device)
        emb = self.time(timestep_embedding(t, config.channels))
        if self.pool is not None:
            emb = emb + self.pool(pooled)
        try:
            return self.trunk(x, emb)  # the U-Net's paths; _run adds the cross-attention
        finally:
            self._context = self._mask = None


PREDICTIONS = ("eps", "v")


class TextDiffusion(Diffusion):
    """Diffusion with prompts: ``y`` is N x L token ids; ``empty`` (L ids) is the empty prompt.

    ``prediction="eps"``: the network predicts the noise; ``"v"``: it predicts
    ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0`` (Salimans & Ho, 2022; Stable Diffusion 2),
    and ``eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v`` feeds the same samplers. At high noise
    ``v`` is close to ``-x0``, so a small network's error there does not blow up as the epsilon
    prediction's does when it is divided by ``sqrt(alpha_bar)``.

    ``eps`` guides with ``g = out_u + w (out_c - out_u)``, out_u the prediction for the empty
    prompt (or for ``negative``, a negative prompt, as Stable Diffusion's pipelines allow). With
    ``guidance_rescale = phi > 0`` the guided prediction is pulled back to the spread of the
    conditional one, ``phi g std(out_c) / std(g) + (1 - phi) g`` per sample (Lin et al., 2024;
    ``diffusers``' ``guidance_rescale``, tested equal): large ``w`` then no longer overshoots the
    pixel range.
    """

    def __init__(self, net: TextUNet, empty: torch.Tensor, T: int = 1000, schedule: str = "squaredcos_cap_v2",
                 prediction: str = "eps", guidance_rescale: float = 0.0):
        super().__init__(net, T, schedule, clip=1.0)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if not 0 <= guidance_rescale <= 1:
            raise ValueError(f"guidance_rescale must lie in [0, 1] (0: plain guidance), got {guidance_rescale}")
        self.prediction, self.guidance_rescale = prediction, guidance_rescale
        self.n_classes = net.text_config.text.vocab_size  # conditional; y holds token ids
        self.register_buffer("empty", torch.as_tensor(empty, dtype=torch.long))
        self.negative: torch.Tensor | None = None

    def _ab(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.schedule.alpha_bar.to(like.device)[t].view(-1, *[1] * (like.dim() - 1))

    def loss(self, x0, y=None, p_uncond=0.0, generator=None):
        if y is None:
            raise ValueError("give prompts (token ids); the empty prompt stands for 'no condition'")
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        n, device = len(x0), x0.device
        t = torch.randint(self.T, (n,), generator=generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        xt = self.schedule.add_noise(x0, eps, t)
        drop = (torch.rand(n, generator=generator) < p_uncond).to(device)
        y = torch.where(drop[:, None], self.empty.to(device)[None], y)
        if self.prediction == "v":
            ab = self._ab(t, x0)
            return F.mse_loss(self.net(xt, t, y), ab.sqrt() * eps - (1 - ab).sqrt() * x0)
        return F.mse_loss(self.net(xt, t, y), eps)

    def eps(self, xt, t, y=None, guidance=1.0):
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0 (0: the empty prompt only, 1: the prompt, > 1: "
                             f"stronger), got {guidance}")
        tt = torch.full((len(xt),), t, dtype=torch.long, device=xt.device)
        if y is None:
            y = self.empty[None].expand(len(xt), -1)
        uncond = self.empty if self.negative is None else self.negative.to(xt.device)
        if guidance == 1.0:
            out = self.net(xt, tt, y)
        else:
            both = self.net(torch.cat([xt, xt]), torch.cat([tt, tt]),
                            torch.cat([y, uncond[None].expand(len(xt), -1)]))
            out_c, out_u = both.chunk(2)
            out = out_u + guidance * (out_c - out_u)  # linear, so the same in eps or v
            if self.guidance_rescale:
                dims = list(range(1, out.dim()))
                rescaled = out * out_c.std(dims, keepdim=True) / out.std(dims, keepdim=True)
                out = self.guidance_rescale * rescaled + (1 - self.guidance_rescale) * out
        if self.prediction == "v":
            ab = self._ab(tt, xt)
            return (1 - ab).sqrt() * xt + ab.sqrt() * out
        return out

    @torch.no_grad()
    def cross_attention_maps(self, x0: torch.Tensor, y: torch.Tensor, t: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Where each prompt token is looked at: N x L x H x W maps for images ``x0`` (model scale)
        noised to step ``t``, averaged over heads and cross-attention layers (each upsampled to
        the finest one's H x W). Map l of image n is how much each position's query attends to
        token l; over l the maps sum to 1 at every position."""
        xt = self.schedule.add_noise(x0, torch.randn(x0.shape, generator=generator).to(x0.device),
                                     torch.full((len(x0),), t))
        layers = self.net.cross_attentions
        for m in layers:
            m.record = True
        try:
            self.net(xt, torch.full((len(x0),), t, device=x0.device), y)
            maps = []
            for m in layers:
                w = m.weights.mean(1)                        # N x HW x L, averaged over heads
                side = int(w.size(1) ** 0.5)
                maps.append(w.transpose(1, 2).reshape(len(x0), -1, side, side))
        finally:
            for m in layers:
                m.record, m.weights = False, None
        size = max(m.size(-1) for m in maps)
        return torch.stack([F.interpolate(m, size=size, mode="nearest") for m in maps]).mean(0)
