"""Decoding: turn a language model's next-token distribution into text.

A causal LM gives logits ``z`` for the next token; decoding picks the token. This module writes
every standard rule from scratch, in the order Hugging Face ``generate`` applies them:

1. repetition penalty (Keskar et al. 2019): ``z_i / r`` if ``z_i > 0`` else ``z_i * r`` for every
   token ``i`` already in the text;
2. temperature: ``z / T`` (T < 1 sharpens, T > 1 flattens ``softmax(z / T)``);
3. top-k (Fan et al. 2018): keep the ``k`` largest logits;
4. top-p, nucleus (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
   probability mass reaches ``p``;

then picks the next token greedily (argmax), by sampling from ``softmax``, or by beam search.
:func:`generate` is one entry point for the book's :class:`~aigc_lib.models.gpt.GPT` (with its
KV cache) and for any ``transformers`` causal LM (with its ``cache``, ``past_key_values`` before
5.x); any other module whose ``forward(idx)`` returns logits (or a tuple starting with them) also
works, without a cache.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

# ----------------------------------------------------------------------------- logit filters


def apply_repetition_penalty(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Hugging Face's variant of CTRL's penalty: divide positive logits, multiply negative ones.

    CTRL (Keskar et al. 2019) divides the logit of every token seen in ``ids`` by the penalty
    whatever its sign, which *raises* the probability of a seen token whose logit is negative;
    ``transformers`` (and this function) multiply negative logits instead, so the penalty always
    lowers a seen token's probability.

    ``logits`` is B x V, ``ids`` is B x T (the prompt and the tokens generated so far).
    """
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 means no penalty), got {penalty}")
    if penalty == 1.0:
        return logits
    seen = torch.gather(logits, 1, ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, ids, seen)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``z / T``: the distribution ``softmax(z / T)`` is sharper for T < 1, flatter for T > 1."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use do_sample=False for greedy decoding), got {temperature}")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest (per row) to -inf."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be an int >= 1 (or None for no top-k filter), got {k!r}")
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability mass reaches ``p``.

    Sorting the probabilities in decreasing order, token ``j`` is kept when the mass of the tokens
    before it is still below ``p``; the most likely token is always kept.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1.0 keeps every token), got {p}")
    if p == 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    remove_sorted = mass_before >= p
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: torch.Tensor, ids: torch.Tensor, *, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None,
                   repetition_penalty: float = 1.0) -> torch.Tensor:
    """Apply the repetition penalty, temperature, top-k and top-p, in that order (as HF does)."""
    logits = apply_repetition_penalty(logits, ids, repetition_penalty)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


# ----------------------------------------------------------------------------- model adapters


class _Stepper:
    """Next-token logits of a growing text: the sliding window and the cache bookkeeping."""

    def __init__(self, model: nn.Module, context: int | None, use_cache: bool):
        self.model, self.context, self.use_cache = model, context, use_cache
        self.reset()

    def reset(self) -> None:
        self.state: Any = None
        self.seen = 0  # tokens already inside self.state

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B x V, float32) of the token after ``ids`` (B x T, the whole text so far)."""
        if self.context is not None and ids.size(1) > self.context:
            ids = ids[:, -self.context:]  # sliding window: only the last `context` tokens fit
            self.reset()  # absolute positions shifted, so the cache is stale
            out = self._full(ids)
        elif not self.use_cache:
            out = self._full(ids)
        else:
            out = self._step(ids[:, self.seen:])
            self.seen = ids.size(1)
        return out[:, -1, :].float()

    def _full(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B x T x V) of a forward pass over ``ids``, without a cache."""
        raise NotImplementedError

    def _step(self, new: torch.Tensor) -> torch.Tensor:
        """Logits (B x T x V) of the ``new`` tokens, which continue the cached ones."""
        raise NotImplementedError

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the cache rows ``index`` (after beam search picked its new beams)."""


class _BookCache(_Stepper):
    """The book's KV-cache protocol: ``model.new_cache()`` and ``model(idx, cache=, last_only=)``."""

    def _full(self, ids):
        return self.model(ids, last_only=True)[0]

    def _step(self, new):
        if self.state is None:
            self.state = self.model.new_cache()
        return self.model(new, cache=self.state, last_only=True)[0]

    def reorder(self, index):
        if self.state is not None:
            self.state.reorder(index)


class _HFCache(_Stepper):
    """A ``transformers`` causal LM and its cache: the argument and output ``cache`` from
    transformers 5.2x (which deprecates ``past_key_values``, to be removed in 5.40), else
    ``past_key_values`` (transformers 4.x, where ``cache`` does not exist)."""

    def __init__(self, model: nn.Module, context: int | None, use_cache: bool):
        super().__init__(model, context, use_cache)
        parameters = inspect.signature(model.forward).parameters
        self.keep_last = "logits_to_keep" in parameters
        self.cache_name = "cache" if "cache" in parameters else "past_key_values"

    def _full(self, ids):
        return self.model(input_ids=ids, use_cache=False).logits

    def _step(self, new):
        kwargs = dict(logits_to_keep=1) if self.keep_last else {}
        kwargs[self.cache_name] = self.state
        result = self.model(input_ids=new, use_cache=True, **kwargs)
        self.state = result[self.cache_name]
        return result.logits

    def reorder(self, index):
        if hasattr(self.state, "reorder_cache"):
            self.state.reorder_cache(index)
        elif self.state is not None:  # legacy tuple cache
            self.state = tuple(tuple(t.index_select(0, index) for t in layer) for layer in self.state)


class _NoCache(_Stepper):
    """Any module whose ``forward(idx)`` returns logits, a tuple starting with them, or ``.logits``."""

    def _full(self, ids):
        out = self.model(ids)
        return out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)


def _stepper(model: nn.Module, use_cache: bool) -> _Stepper:
    """The adapter for ``model``: the book's KV cache, Hugging Face's, or none."""
    config = getattr(model, "config", None)
    if callable(getattr(model, "new_cache", None)) and hasattr(config, "block_size"):
        return _BookCache(model, config.block_size, use_cache)
    if hasattr(model, "config") and hasattr(model, "generation_config"):
        context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        return _HFCache(model, context, use_cache)
    return _NoCache(model, getattr(model, "block_size", None), use_cache=False)


# ----------------------------------------------------------------------------- generate


def _as_ids(input_ids: Any) -> torch.Tensor:
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
        raise ValueError(f"input_ids must be a B x T tensor of token ids, got shape {tuple(ids.shape)} "
                         f"dtype {ids.dtype}")
    if ids.size(1) == 0:
        raise ValueError("the prompt is empty: give at least one token (e.g. a BOS/EOS token or a "
                         "newline) to condition on")
    return ids.long()


def _stop_ids(eos_token_id: int | Iterable[int] | None) -> list[int]:
    if eos_token_id is None:
        return []
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not all(isinstance(i, int) and i >= 0 for i in ids):
        raise ValueError(f"eos_token_id must be a token id or a list of token ids, got {eos_token_id!r}")
    return ids


@torch.no_grad()
def generate(model: nn.Module, input_ids: Any, max_new_tokens: int, *, do_sample: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float = 1.0, num_beams: int = 1, length_penalty: float = 1.0,
             num_return_sequences: int = 1, eos_token_id: int | Iterable[int] | None = None,
             pad_token_id: int | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, sliding_window: bool = False,
             logits_processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
             ) -> torch.Tensor:
    """Continue ``input_ids`` (B x T, or T) by up to ``max_new_tokens`` tokens.

    Greedy by default; ``do_sample=True`` samples from the processed distribution (temperature,
    top-k, top-p); ``num_beams > 1`` runs beam search. ``eos_token_id`` (one id or several) ends a
    sequence, which is then padded with ``pad_token_id`` (default: the first stop token) until
    every sequence has stopped. ``generator`` makes sampling reproducible. The model's context
    window must hold the prompt and the new tokens unless ``sliding_window=True`` (then the model
    sees only the last ``block_size`` tokens, as nanoGPT does). Returns the prompt and the new
    tokens, ``(B * num_return_sequences) x (T + new)``; the arguments mean what they mean in
    Hugging Face ``generate``. ``logits_processor(ids, logits) -> logits`` (optional) edits the
    model's raw next-token logits (B x V) given the text so far (B x T) before every other rule,
    e.g. a watermark (:mod:`aigc_lib.watermark`).
    """
    ids = _as_ids(input_ids)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1 (1 means no beam search), got {num_beams!r}")
    if not isinstance(num_return_sequences, int) or num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be an int >= 1, got {num_return_sequences!r}")
    # Validate the filters up front, so a wrong value fails even if it would be unused.
    apply_temperature(torch.zeros(1, 1), temperature)
    apply_repetition_penalty(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long), repetition_penalty)
    if top_k is not None:
        top_k_filter(torch.zeros(1, 1), top_k)
    if top_p is not None:
        top_p_filter(torch.zeros(1, 1), top_p)
    if not do_sample and (temperature != 1.0 or top_k is not None or top_p is not None):
        raise ValueError("temperature, top_k and top_p only change sampling; with do_sample=False "
                         "(greedy or beam search) they would be silently ignored. Pass do_sample=True "
                         "to sample, or drop them.")
    if do_sample and num_beams > 1:
        raise ValueError("choose sampling (do_sample=True, num_beams=1) or beam search "
                         "(do_sample=False, num_beams > 1); beam sampling is not implemented")
    if num_beams > 1 and num_return_sequences > num_beams:
        raise ValueError(f"beam search can return at most num_beams={num_beams} sequences, "
                         f"asked for num_return_sequences={num_return_sequences}")
    if not do_sample and num_beams == 1 and num_return_sequences > 1:
        raise ValueError("greedy decoding returns the same sequence every time; use do_sample=True "
                         "or num_beams > 1 for several different sequences")
    if logits_processor is not None and not callable(logits_processor):
        raise ValueError("logits_processor must be a callable (ids, logits) -> logits, or None")
    stop = _stop_ids(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (stop[0] if stop else None)

    was_training = model.training
    model.eval()
    stepper = _stepper(model, use_cache)
    vocab = _vocab_size(model)
    if vocab is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(f"prompt token ids must be in [0, {vocab - 1}], got ids in "
                         f"[{int(ids.min())}, {int(ids.max())}]; check that the tokenizer matches the model")
    # The last step reads the prompt and all new tokens but the last one.
    if (stepper.context is not None and not sliding_window
            and ids.size(1) + max_new_tokens - 1 > stepper.context):
        raise ValueError(f"the prompt ({ids.size(1)} tokens) plus max_new_tokens={max_new_tokens} exceed "
                         f"the model's context window of {stepper.context} tokens (the model must read "
                         f"{ids.size(1) + max_new_tokens - 1}); ask for fewer tokens, shorten the prompt, "
                         "or pass sliding_window=True")
    try:
        if num_beams > 1:
            return beam_search(stepper, ids, max_new_tokens, num_beams=num_beams,
                               length_penalty=length_penalty, num_return_sequences=num_return_sequences,
                               stop=stop, pad=pad, repetition_penalty=repetition_penalty,
                               logits_processor=logits_processor)
        ids = ids.repeat_interleave(num_return_sequences, dim=0)
        return _sample_or_greedy(stepper, ids, max_new_tokens, do_sample=do_sample,
                                 temperature=temperature, top_k=top_k, top_p=top_p,
                                 repetition_penalty=repetition_penalty, stop=stop, pad=pad,
                                 generator=generator, logits_processor=logits_processor)
    finally:
        model.train(was_training)


def _vocab_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "vocab_size", None)


def _sample_or_greedy(stepper: _Stepper, ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool,
                      temperature: float, top_k: int | None, top_p: float | None,
                      repetition_penalty: float, stop: list[int], pad: int | None,
                      generator: torch.Generator | None,
                      logits_processor: Callable | None = None) -> torch.Tensor:
    finished = torch.zeros(ids.size(0), dtype=torch.bool, device=ids.device)
    stop_t = torch.tensor(stop, device=ids.device)
    for _ in range(max_new_tokens):
        logits = stepper.logits(ids)
        if logits_processor is not None:
            logits = logits_processor(ids, logits)
        logits = apply_repetition_penalty(logits, ids, repetition_penalty)
        if do_sample:
            logits = process_logits(logits, ids, temperature=temperature, top_k=top_k, top_p=top_p)
            probs = logits.softmax(dim=-1)
            if generator is not None and generator.device != probs.device:
                probs = probs.to(generator.device)
            next_id = torch.multinomial(probs, 1, generator=generator).to(ids.device)
        else:
            next_id = logits.argmax(dim=-1, keepdim=True)
        if stop:
            next_id = torch.where(finished[:, None], torch.full_like(next_id, pad), next_id)
            finished |= torch.isin(next_id[:, 0], stop_t)
        ids = torch.cat([ids, next_id], dim=1)
        if stop and bool(finished.all()):
            break
    return ids


def beam_search(stepper: _Stepper, ids: torch.Tensor, max_new_tokens: int, *, num_beams: int,
                length_penalty: float = 1.0, num_return_sequences: int = 1, stop: list[int] = (),
                pad: int | None = None, repetition_penalty: float = 1.0,
                logits_processor: Callable | None = None) -> torch.Tensor:
    """Keep the ``num_beams`` most likely partial sequences; return the best finished ones.

    A sequence's score is ``sum_t log p(y_t | y_<t, prompt) / L ** length_penalty`` with ``L`` its
    number of new tokens. Each step extends every beam by every token, keeps the top
    ``2 * num_beams`` candidates, moves those that end in a stop token (when they rank in the top
    ``num_beams``) to the finished list, and continues the best ``num_beams`` others. At
    ``max_new_tokens`` the running beams finish too. Like Hugging Face (``early_stopping=False``),
    the search ends early once no running beam can beat the worst of ``num_beams`` finished ones.
    """
    B, T0 = ids.shape
    K = num_beams
    device = ids.device
    stop_t = torch.tensor(list(stop), device=device, dtype=torch.long)
    keep = max(2, 1 + len(stop)) * K  # enough candidates that K stay alive after stops
    beams = ids.repeat_interleave(K, dim=0)  # (B*K) x T
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = -1e9  # all beams start identical: only the first one may expand at step 1
    finished: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(max_new_tokens):
        logits = stepper.logits(beams)
        if logits_processor is not None:
            logits = logits_processor(beams, logits)
        logp = apply_repetition_penalty(F.log_softmax(logits, dim=-1), beams, repetition_penalty)
        V = logp.size(-1)
        total = (logp.view(B, K, V) + scores[:, :, None]).view(B, K * V)
        top_scores, top_index = torch.topk(total, keep, dim=1)
        beam_of, token_of = top_index // V, top_index % V
        length = step + 1
        last = step == max_new_tokens - 1
        next_beams, next_scores, next_rows = [], [], []
        for b in range(B):
            alive_rows, alive_tokens, alive_scores = [], [], []
            for rank in range(keep):
                row = b * K + int(beam_of[b, rank])
                token, score = int(token_of[b, rank]), float(top_scores[b, rank])
                ends = last or (len(stop) > 0 and token in stop)
                if ends:
                    if rank < K and not done[b]:
                        seq = torch.cat([beams[row], beams.new_tensor([token])])
                        finished[b].append((score / length ** length_penalty, seq))
                    continue
                if len(alive_rows) < K:
                    alive_rows.append(row), alive_tokens.append(token), alive_scores.append(score)
            finished[b].sort(key=lambda f: -f[0])
            del finished[b][K:]
            if not last and not done[b] and len(finished[b]) == K:
                # the best running beam, scored at the current length, cannot beat the worst finished
                best_running = alive_scores[0] / length ** length_penalty
                done[b] = best_running <= finished[b][-1][0]
            next_rows += alive_rows
            next_beams.append(torch.tensor(alive_tokens, device=device))
            next_scores.append(torch.tensor(alive_scores, device=device))
        if last or all(done) or any(len(r) < K for r in next_beams):
            break
        rows = torch.tensor(next_rows, device=device)
        beams = torch.cat([beams.index_select(0, rows), torch.cat(next_beams)[:, None]], dim=1)
        scores = torch.stack(next_scores)
        stepper.reorder(rows)
    out = []
    for b in range(B):
        for _, seq in finished[b][:num_return_sequences]:
            out.append(seq)
    width = max(len(s) for s in out)
    fill = pad if pad is not None else (stop[0] if stop else 0)
    result = torch.full((len(out), width), fill, dtype=torch.long, device=device)
    for i, seq in enumerate(out):
        result[i, :len(seq)] = seq
    return result
