"""The book's speed figures as a benchmark (`make bench`), never as a test.

A speed comparison whose two sides are close (ours against `transformers.generate`, int8 against
fp32, a LoRA step against a full one) flips with the machine's load, its thread count and the
library versions, so the chapters state such figures as measured and assert none of them. This
tool measures them all in one place, under stated conditions, and prints best / median / worst
over repeats. It exits 0 whatever the numbers are.

    python tools/bench.py                      # the sizes the chapters use
    python tools/bench.py --size tiny          # a few seconds, for CI (so that the tool does not rot)
    python tools/bench.py --json _build/bench.json

Models are built with random weights from the book's configurations (speed does not depend on
the weights), so nothing trains and nothing is read from the model cache.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib import metadata

import aigc_lib  # noqa: F401  (first: the thread policy, aigc_lib/config.py)
import torch

from aigc_lib import compression, zoo
from aigc_lib.config import thread_policy
from aigc_lib.models.gpt import GPT, GPTConfig
from aigc_lib.models.lora import add_lora
from aigc_lib.sampling import generate
from aigc_lib.timing import spread

SIZES = {  # tokens generated, batch for the big int8 case, repeats
    "book": dict(tokens=256, tokens_gpt2=64, int8_tokens=30, repeats=5, gpt2=True),
    "tiny": dict(tokens=16, tokens_gpt2=4, int8_tokens=2, repeats=2, gpt2=False),
}


def hf_twin(n_layer: int, n_head: int, n_embd: int, vocab: int, context: int):
    """A random transformers GPT-2 and the book's GPT with the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    aigc_lib.seed_everything(0)
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=context,
                        vocab_size=vocab, bos_token_id=None, eos_token_id=None)
    hf = GPT2LMHeadModel(config).eval()
    return hf, GPT.from_pretrained(hf).eval()


def generation(size: dict) -> list[tuple[str, str, dict]]:
    """Greedy generation, batch 1: ours with and without the KV cache, and transformers'."""
    rows, n = [], size["tokens"]
    shapes = [("small (4 x 256, 84 symbols)", (4, 4, 256, 84, 512), n)]
    if size["gpt2"]:
        shapes.append(("GPT-2 size (12 x 768, 50,257 tokens)", (12, 12, 768, 50257, 1024), size["tokens_gpt2"]))
    for name, shape, new in shapes:
        hf, ours = hf_twin(*shape)
        prompt = torch.randint(0, shape[3], (1, 8), generator=aigc_lib.generator(0))
        hf_kw = dict(max_new_tokens=new, do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            runs = {"ours, KV cache": lambda: generate(ours, prompt, new),
                    "transformers generate": lambda: hf.generate(prompt, **hf_kw)}
            if not name.startswith("GPT-2"):
                runs["ours, no cache"] = lambda: generate(ours, prompt, new, use_cache=False)
            for what, fn in runs.items():
                reps = 1 if what.endswith("no cache") and size["gpt2"] else size["repeats"]
                rows.append((f"generate {new} tokens, {name}", what, per_unit(spread(fn, reps), new, "token")))
    return rows


def int8(size: dict) -> list[tuple[str, str, dict]]:
    """Sliding-window generation of the responsible-AIGC chapter's GPT shape, fp32 vs int8."""
    config = zoo.ShakespeareGPT().model
    aigc_lib.seed_everything(0)
    fp32 = GPT(config).eval()
    models = {"fp32": fp32, "int8 (torch dynamic quantization)": compression.quantize_int8(GPT(config).eval())}
    rows, n = [], size["int8_tokens"]
    for batch in (1, 40):
        ids = torch.randint(config.vocab_size, (batch, config.block_size), generator=aigc_lib.generator(0))
        for what, model in models.items():
            fn = lambda m=model: generate(m, ids, n, sliding_window=True, use_cache=False)  # noqa: E731
            rows.append((f"int8 vs fp32, batch {batch}, {n} tokens", what,
                         per_unit(spread(fn, size["repeats"]), batch * n, "token")))
    return rows


def lora_step(size: dict) -> list[tuple[str, str, dict]]:
    """One AdamW step of the pretraining chapter's GPT at its batch: every weight vs LoRA r = 4."""
    recipe = zoo.ShakespeareGPT()
    config, batch = recipe.model, recipe.train.batch_size
    x = torch.randint(config.vocab_size, (batch, config.block_size + 1), generator=aigc_lib.generator(0))
    rows = []
    for what in ("full fine-tuning", "LoRA r = 4 on c_attn"):
        aigc_lib.seed_everything(0)
        model = GPT(config)
        if what.startswith("LoRA"):
            add_lora(model, ("c_attn",), r=4, alpha=8)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(model=model, opt=opt):
            loss = model(x[:, :-1], x[:, 1:])[1]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        rows.append((f"training step, batch {batch} x {config.block_size}", what,
                     spread(step, 3 * size["repeats"])))
    return rows


def image_samplers(size: dict) -> list[tuple[str, str, dict]]:
    """Images per second of each family's sampler, built from the book's recipes (random weights)."""
    n, rows = (64 if size["gpt2"] else 4), []
    gan = zoo.MNISTGAN(kind="dcgan").build()
    rows.append(("sample digits", "DCGAN (1 pass)", lambda: gan.G.sample(n)))
    vae = zoo.MNISTVAE().build()
    rows.append(("sample digits", "VAE decoder (1 pass)", lambda: vae.sample(n)))
    unet = zoo.MNISTDiffusion().build()
    steps = 50 if size["gpt2"] else 2
    rows.append(("sample digits", f"pixel diffusion, U-Net, {steps} steps",
                 lambda: unet.sample(n, steps=steps, sampler="ddim", progress=False)))
    out = []
    with torch.inference_mode():
        for what, who, fn in rows:
            out.append((f"{what}, {n} at once", who, per_unit(spread(fn, size["repeats"]), n, "image")))
    return out


def per_unit(seconds: dict, n: int, unit: str) -> dict:
    return {**seconds, f"{unit}s_per_second_best": n / seconds["best"]}


def conditions() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if sys.platform == "linux" else platform.processor()
    versions = {name: metadata.version(name) for name in ("torch", "transformers", "numpy")}
    return {"cpu": cpu, "machine": platform.machine(), "python": platform.python_version(), **versions,
            **thread_policy(), "date": time.strftime("%Y-%m-%d %H:%M")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="book")
    parser.add_argument("--json", help="also write the rows and the conditions to this file")
    args = parser.parse_args(argv)
    size, rows = SIZES[args.size], []
    for part in (generation, int8, lora_step, image_samplers):
        rows += part(size)
    cond = conditions()
    print("conditions: " + ", ".join(f"{k} {v}" for k, v in cond.items()))
    print(f"{'what':58s} {'who':36s} {'best':>9s} {'median':>9s} {'worst':>9s}  rate (best)")
    for what, who, r in rows:
        rate = next((f"{v:9.1f} {k.split('_')[0]}/s" for k, v in r.items() if k.endswith("_per_second_best")), "")
        print(f"{what:58s} {who:36s} {r['best']:8.4f}s {r['median']:8.4f}s {r['worst']:8.4f}s  {rate}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"conditions": cond, "size": args.size,
                       "rows": [{"what": w, "who": h, **r} for w, h, r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
