"""A reward model: the book's GPT with a scalar head instead of next-token logits.

``r(x, y) = w . h_T + b`` where ``h_T`` is the GPT's final hidden state (after the last LayerNorm)
at the last token of the response: the causal model has read the whole prompt and response there.
It is trained on preference pairs with the Bradley-Terry loss
(:func:`aigc_lib.training.rl.bradley_terry_loss`), as InstructGPT's reward model was (Ouyang et
al. 2022). The GPT is used as it is (:mod:`aigc_lib.models.gpt` is not changed): a forward hook on
its final LayerNorm reads the hidden states.
"""
from __future__ import annotations

import torch
from torch import nn

from aigc_lib.models.gpt import GPT, GPTConfig


class RewardModel(nn.Module):
    """``forward(ids, mask) -> rewards (B,)``: ``ids`` B x T prompt + response tokens, ``mask``
    B x (T-1) with 1 where the target ``ids[:, t+1]`` is a response token (the layout of
    :func:`aigc_lib.training.finetune.pack`); the reward is read at the response's last token."""

    def __init__(self, config: GPTConfig | GPT):
        super().__init__()
        self.gpt = config if isinstance(config, GPT) else GPT(config)
        self.head = nn.Linear(self.gpt.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """The GPT's final hidden states, B x T x n_embd."""
        seen: list[torch.Tensor] = []
        handle = self.gpt.transformer.ln_f.register_forward_hook(lambda m, i, out: seen.append(out))
        try:
            self.gpt(ids)
        finally:
            handle.remove()
        return seen[0]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or mask.shape != (ids.size(0), ids.size(1) - 1):
            raise ValueError(f"need ids B x T and mask B x (T-1), got {tuple(ids.shape)} and {tuple(mask.shape)}")
        if (mask.sum(1) == 0).any():
            raise ValueError("every row needs at least one response token in the mask")
        positions = torch.arange(1, ids.size(1), device=ids.device)
        last = (mask.float() * positions).argmax(dim=1)  # position of the response's last token in ids
        h = self.hidden(ids)
        return self.head(h[torch.arange(len(ids), device=ids.device), last]).squeeze(-1)
