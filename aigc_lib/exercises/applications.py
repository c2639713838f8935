"""The applications chapter's checked exercises: slerp between latent codes, the masked repair error,
CLIP's loss and the cross-attention maps of the tiny Stable Diffusion."""
import torch

from aigc_lib.applications.repair import masked_mse as _masked_mse
from aigc_lib.applications.video import interpolate
from aigc_lib.exercises.core import exercise
from aigc_lib.models.attention import scaled_dot_product_attention as _sdpa
from aigc_lib.models.clip import clip_loss as _clip_loss


def _slerp(z0: torch.Tensor, z1: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` codes from z0 to z1 inclusive along the great circle: ``video.interpolate(method="slerp")``."""
    return interpolate(z0, z1, n, method="slerp")


@exercise(reference=_slerp)
def slerp(g):
    """(z0, z1, n): two vectors of the same length and the number of codes on the path."""
    yield torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 3       # a quarter turn
    yield torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0]), 5       # different norms
    for d, n in [(8, 4), (20, 7)]:
        yield torch.randn(d, generator=g), torch.randn(d, generator=g), n
    z = torch.randn(6, generator=g)
    yield z, 2 * z, 4                                                 # parallel: the straight line


def _lerp(z0, z1, n):
    t = torch.linspace(0, 1, n)[:, None]
    return (1 - t) * z0 + t * z1


def _omega(z0, z1):
    return torch.arccos(((z0 @ z1) / (z0.norm() * z1.norm())).clamp(-1, 1))


def _naive_slerp(z0, z1, t):
    omega = _omega(z0, z1)
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


@slerp.mistake("that is the straight line (lerp): slerp weights z0 and z1 by sin((1 - t) omega) / sin(omega) "
               "and sin(t omega) / sin(omega)")
def _(z0, z1, n):
    return _lerp(z0, z1, n)


@slerp.mistake("the path includes both ends: t = linspace(0, 1, n), n codes from z0 to z1")
def _(z0, z1, n):
    t = torch.linspace(0, 1, n + 1)[:-1, None]
    if _omega(z0, z1) < 1e-4:
        return (1 - t) * z0 + t * z1
    return _naive_slerp(z0, z1, t)


@slerp.mistake("for (nearly) parallel z0 and z1, omega = 0 and sin(omega) = 0: fall back to the straight "
               "line there instead of dividing 0 by 0")
def _(z0, z1, n):
    return _naive_slerp(z0, z1, torch.linspace(0, 1, n)[:, None])


@exercise(reference=_masked_mse)
def masked_mse(g):
    """(x_hat, x, mask): images (N, C, H, W), mask 1 where the pixel was seen, 0 where it is missing."""
    x = torch.zeros(1, 1, 2, 2)
    yield torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), x, torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    for n, size in [(2, 4), (3, 8)]:
        mask = (torch.rand(n, 1, size, size, generator=g) < 0.5).float()
        mask[:, :, 0, 0] = 0.0                                        # every image misses a pixel
        yield torch.rand(n, 1, size, size, generator=g), torch.rand(n, 1, size, size, generator=g), mask


@masked_mse.mistake("average over the *missing* pixels only (mask 0): you averaged over every pixel")
def _(x_hat, x, mask):
    return ((1 - mask) * (x_hat - x) ** 2).flatten(1).mean(1)


@masked_mse.mistake("the mask is 1 where the pixel was *seen*: the repair error is over the pixels where it is 0")
def _(x_hat, x, mask):
    return (mask * (x_hat - x) ** 2).flatten(1).sum(1) / mask.flatten(1).sum(1)


@masked_mse.mistake("one error per image (shape N): you averaged over the whole batch")
def _(x_hat, x, mask):
    return ((1 - mask) * (x_hat - x) ** 2).sum() / (1 - mask).sum()


# ----------------------------------------------------------------------------- the tiny Stable Diffusion


@exercise(reference=_clip_loss)
def clip_loss(g):
    """(logits,): an N x N matrix, row i = image i against every caption j; the pairs are (i, i)."""
    yield (torch.eye(2) * 4,)                                         # confident and right
    yield (torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]),)  # not symmetric
    for n in (4, 7):
        yield (3 * torch.randn(n, n, generator=g),)


@clip_loss.mistake("CLIP's loss is symmetric: average the cross-entropy of the rows (image -> caption) "
                   "and of the columns (caption -> image); you used the rows only")
def _(logits):
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)))


@clip_loss.mistake("each softmax runs over one row (or one column), not over the whole matrix")
def _(logits):
    return -logits.flatten().log_softmax(0).view_as(logits).diagonal().mean()


@clip_loss.mistake("the matching caption of image i is caption i: the targets are the diagonal, "
                   "arange(N), and the loss is a mean over the N pairs, not a sum")
def _(logits):
    t = torch.arange(len(logits))
    ce = torch.nn.functional.cross_entropy
    return (ce(logits, t, reduction="sum") + ce(logits.T, t, reduction="sum")) / 2


def _cross_attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) over the unmasked keys): B x N x L, row i = image position i."""
    return _sdpa(q, k, k, mask[:, None, :], return_weights=True)[1]


@exercise(reference=_cross_attention_weights)
def cross_attention_weights(g):
    """(q, k, mask): queries B x N x d from image positions, keys B x L x d from prompt tokens,
    mask B x L (True for real tokens, False for padding)."""
    yield torch.ones(1, 1, 2), torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]]), torch.tensor([[True, True, False]])
    for b, n, l, d in [(2, 4, 5, 8), (1, 9, 3, 4)]:
        mask = torch.ones(b, l, dtype=torch.bool)
        mask[0, -1] = False                                           # the first prompt is shorter
        yield torch.randn(b, n, d, generator=g), torch.randn(b, l, d, generator=g), mask


@cross_attention_weights.mistake("scale the scores by 1 / sqrt(d) before the softmax")
def _(q, k, mask):
    s = (q @ k.transpose(-1, -2)).masked_fill(~mask[:, None, :], float("-inf"))
    return s.softmax(-1)


@cross_attention_weights.mistake("each image position (query) spreads its attention over the prompt "
                                 "tokens: the softmax runs over the keys (last axis), not the queries")
def _(q, k, mask):
    s = (q @ k.transpose(-1, -2) / q.size(-1) ** 0.5).masked_fill(~mask[:, None, :], float("-inf"))
    return s.softmax(-2).nan_to_num(0.0)


@cross_attention_weights.mistake("padding tokens must get weight 0: set their scores to -inf before "
                                 "the softmax (the mask is True for real tokens)")
def _(q, k, mask):
    return (q @ k.transpose(-1, -2) / q.size(-1) ** 0.5).softmax(-1)
