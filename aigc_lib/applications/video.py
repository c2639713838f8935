"""Video in miniature: a walk through a generative model's latent space, rendered frame by frame.

Consecutive frames of a video must change a little at a time. A decoder ``x = g(z)`` that is smooth
in ``z`` gives that for free: walk ``z`` along a smooth path through a few key codes and decode
every point. Between two keys the path is a spherical interpolation (slerp, White 2016)

    slerp(z0, z1; t) = sin((1 - t) omega) / sin(omega) z0 + sin(t omega) / sin(omega) z1,
    cos(omega) = <z0, z1> / (|z0| |z1|).

The motivation is a length argument. A draw from N(0, I) in d dimensions has length close to
sqrt(d), and two independent draws are nearly orthogonal, so the midpoint of the straight line
between them is only about 1/sqrt(2) as long: a length the prior rarely draws. When the two ends
have the same length, slerp keeps that length all along the path, while the straight line's
midpoint is shorter by the factor cos(omega / 2). Ends of different lengths get no such guarantee:
along slerp the length can even leave the range between the two. Encoded codes are not prior
draws and differ in length, so slerp is a heuristic here, and what matters is what the decoder
does along the path. :func:`interpolate` does both.

:func:`write_gif` stores frames as an animated GIF with Pillow, and :func:`gif_html` embeds one in
a page as a data URI (no file or server needed to watch it).
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Callable

import numpy as np
import torch

METHODS = ("slerp", "linear")


def interpolate(z0: torch.Tensor, z1: torch.Tensor, n: int, method: str = "slerp") -> torch.Tensor:
    """``n`` codes from ``z0`` to ``z1`` inclusive (shape n x d), by ``slerp`` or ``linear``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if z0.dim() != 1 or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must be two vectors of the same length, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (the path includes both ends), got {n!r}")
    t = torch.linspace(0, 1, n, dtype=z0.dtype, device=z0.device)[:, None]
    if method == "linear":
        return (1 - t) * z0 + t * z1
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-4:  # (nearly) parallel: slerp tends to the straight line
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def latent_walk(keys: torch.Tensor, frames_per_key: int, *, method: str = "slerp", loop: bool = True) -> torch.Tensor:
    """A path through the K key codes (K x d): ``frames_per_key`` frames from each key to the next.

    With ``loop`` the walk returns from the last key to the first, so the animation repeats
    seamlessly; the path then has ``K * frames_per_key`` codes, else ``(K - 1) * frames_per_key + 1``.
    """
    if keys.dim() != 2 or len(keys) < 2:
        raise ValueError(f"keys must be K x d with K >= 2 key codes, got shape {tuple(keys.shape)}")
    if not isinstance(frames_per_key, int) or frames_per_key < 1:
        raise ValueError(f"frames_per_key must be a positive int, got {frames_per_key!r}")
    stops = torch.cat([keys, keys[:1]]) if loop else keys
    segments = [interpolate(a, b, frames_per_key + 1, method)[:-1] for a, b in zip(stops[:-1], stops[1:])]
    path = torch.cat(segments)
    return path if loop else torch.cat([path, keys[-1:]])


@torch.no_grad()
def render_frames(decode: Callable[[torch.Tensor], torch.Tensor], path: torch.Tensor,
                  batch_size: int = 256) -> torch.Tensor:
    """Decode every code of ``path`` (M x d): frames M x C x H x W in [0, 1], on the CPU."""
    if path.dim() != 2:
        raise ValueError(f"path must be M x d latent codes, got shape {tuple(path.shape)}")
    frames = torch.cat([decode(z).cpu() for z in path.split(batch_size)])
    if frames.dim() != 4:
        raise ValueError(f"decode must return images N x C x H x W, got shape {tuple(frames.shape)}")
    return frames.clamp(0, 1)


def frame_change(frames: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel change between consecutive frames, M - 1 values (small = smooth)."""
    if frames.dim() != 4 or len(frames) < 2:
        raise ValueError(f"frames must be M x C x H x W with M >= 2, got shape {tuple(frames.shape)}")
    return (frames[1:] - frames[:-1]).flatten(1).pow(2).mean(1).sqrt()


def _to_pil(frames: torch.Tensor, scale: int) -> list:
    from PIL import Image

    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] not in (1, 3):
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a tensor M x C x H x W with C = 1 (grey) or 3 (RGB), got {got}")
    if len(frames) == 0:
        raise ValueError("there are no frames to write")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int (pixels per image pixel), got {scale!r}")
    x = (frames.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    x = x.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour upscaling keeps pixels crisp
    return [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f, mode="L" if f.shape[-1] == 1 else "RGB")
            for f in x]


def gif_bytes(frames: torch.Tensor, fps: float = 12, *, scale: int = 4, loop: int = 0) -> bytes:
    """An animated GIF of ``frames`` (M x C x H x W in [0, 1]) at ``fps`` frames per second."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    images = _to_pil(frames, scale)
    buffer = io.BytesIO()
    # GIF stores frame delays in hundredths of a second, so rates above 50 fps are not representable
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(round(1000 / fps))), loop=loop)
    return buffer.getvalue()


def write_gif(path: str | Path, frames: torch.Tensor, fps: float = 12, *, scale: int = 4, loop: int = 0) -> Path:
    """Write ``frames`` as an animated GIF (``loop=0``: repeat forever); returns the path."""
    path = Path(path)
    path.write_bytes(gif_bytes(frames, fps, scale=scale, loop=loop))
    return path


def gif_html(data: bytes | str | Path, width: int | None = None, alt: str = "animation") -> str:
    """An ``<img>`` tag that embeds a GIF (bytes or a file) as a data URI: it plays offline."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    if not data[:6] in (b"GIF87a", b"GIF89a"):
        raise ValueError("data is not a GIF file (it should start with 'GIF89a'); make one with gif_bytes")
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="data:image/gif;base64,{base64.b64encode(data).decode()}"{size} alt="{alt}"/>'


def read_gif(data: bytes | str | Path) -> np.ndarray:
    """The frames of a GIF as a uint8 array M x H x W (grey) or M x H x W x 3: for checks and tests."""
    from PIL import Image, ImageSequence

    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with Image.open(src) as im:
        frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    grey = (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()
    return frames[..., 0] if grey else frames
