"""``python -m aigc_lib.zoo``: list the book's trained models; ``python -m aigc_lib.zoo NAME``: train one.

Under ``torchrun --standalone --nproc_per_node=N -m aigc_lib.zoo shakespeare-char-gpt`` the
language models train with DDP (:func:`aigc_lib.training.lm.setup_distributed`).
"""
from __future__ import annotations

import argparse

import torch.distributed as dist

from aigc_lib.training.lm import setup_distributed
from aigc_lib.zoo import RECIPES, catalog


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc_lib.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="a recipe's name (see the list); omit to list them")
    args = parser.parse_args(argv)
    if args.name is None:
        for row in catalog():
            print(f"{row['name']:32s} {row['chapter']:18s} {row['cost']:34s} {row['what']}")
        return
    recipes = {r.name: r for r in RECIPES}
    if args.name not in recipes:
        parser.error(f"no recipe named {args.name!r}; choose from {', '.join(recipes)}")
    rank, world = setup_distributed()
    model, *_, history = recipes[args.name]().load(progress=rank == 0)
    if rank == 0:
        extra = f", val loss {history['val_loss_full']:.4f}" if "val_loss_full" in history else ""
        print(f"{args.name}: {world} process(es), {history.get('train_seconds', 0):.0f} s{extra}")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    main()
