"""The GPT-2 project's checked exercises: nucleus (top-p) filtering and the repetition penalty."""
import torch

from aigc_lib.exercises.core import exercise
from aigc_lib.sampling import apply_repetition_penalty as _apply_repetition_penalty
from aigc_lib.sampling import top_p_filter as _top_p_filter

INF = float("-inf")


@exercise(reference=_top_p_filter)
def top_p_filter(g):
    """(logits of shape (B, V), p): returns the logits with the dropped tokens set to -inf."""
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    yield probs.log(), 0.7                    # keeps 0.5 and 0.3: the pair that reaches 0.7
    yield probs.log(), 0.9
    yield probs.log(), 0.2                    # the top token alone already exceeds p
    yield probs.log(), 1.0                    # keeps everything
    for B, V, p in [(2, 10, 0.5), (3, 50, 0.9)]:
        yield torch.randn(B, V, generator=g) * 2, p


def _sorted_mass(logits):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    return probs, order


@top_p_filter.mistake("one token too few: keep token j while the mass *before* it is below p, so the token "
                      "that crosses p stays in")
def _(logits, p):
    probs, order = _sorted_mass(logits)
    remove = probs.cumsum(-1) >= p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), INF)


@top_p_filter.mistake("sort the probabilities in *decreasing* order: the nucleus is the most likely tokens")
def _(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1)
    probs = sorted_logits.softmax(-1)
    remove = probs.cumsum(-1) - probs >= p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), INF)


@top_p_filter.mistake("always keep the most likely token: when it alone has more than p, your filter "
                      "removes every token")
def _(logits, p):
    probs, order = _sorted_mass(logits)
    remove = probs.cumsum(-1) >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), INF)


@top_p_filter.mistake("return the filtered *logits* (-inf for dropped tokens), not probabilities")
def _(logits, p):
    return _top_p_filter(logits, p).softmax(-1)


@exercise(reference=_apply_repetition_penalty)
def repetition_penalty(g):
    """(logits of shape (B, V), ids of shape (B, T) seen so far, penalty)."""
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 1.0]])
    yield logits, torch.tensor([[0, 1, 1]]), 2.0         # token 1 twice: penalised once
    yield logits, torch.tensor([[3, 4]]), 1.5
    yield logits, torch.tensor([[0]]), 1.0               # no penalty
    for B, V, T in [(2, 12, 4), (3, 40, 10)]:
        yield torch.randn(B, V, generator=g) * 2, torch.randint(0, V, (B, T), generator=g), 1.3


@repetition_penalty.mistake("dividing a *negative* logit by the penalty raises its probability: multiply "
                            "negative logits, divide positive ones")
def _(logits, ids, penalty):
    seen = torch.gather(logits, 1, ids)
    return logits.scatter(1, ids, seen / penalty)


@repetition_penalty.mistake("a token is penalised once however often it was seen: you applied the penalty "
                            "once per occurrence")
def _(logits, ids, penalty):
    out = logits.clone()
    for b in range(ids.size(0)):
        for i in ids[b].tolist():
            out[b, i] = out[b, i] / penalty if out[b, i] > 0 else out[b, i] * penalty
    return out


@repetition_penalty.mistake("the penalty must lower a seen token's logit: you divided the negative logits "
                            "and multiplied the positive ones")
def _(logits, ids, penalty):
    seen = torch.gather(logits, 1, ids)
    return logits.scatter(1, ids, torch.where(seen > 0, seen * penalty, seen / penalty))
