"""Train the applications chapter's CLIP and text-to-image model once and print what they measure.

    AIGC_PROFILE=quick AIGC_CACHE=... python tools/text2image_probe.py [setting=value ...]
"""
import json
import sys
import time

from aigc_lib.zoo.text2image import MNISTCLIP, TextToImage

overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
start = time.perf_counter()
clip, tok, ch = MNISTCLIP().load()
print(f"CLIP: {time.perf_counter() - start:.1f} s, loss {ch['loss'][0]:.3f} -> {ch['loss'][-1]:.3f}",
      ch["retrieval"], flush=True)
model, tok, h = TextToImage().replace(**overrides).load()
print(f"total {time.perf_counter() - start:.1f} s; train {h.get('train_seconds', 0):.1f} s, "
      f"eval {h.get('eval_seconds', 0):.1f} s; loss {sum(h['loss'][:50]) / 50:.4f} -> "
      f"{sum(h['loss'][-100:]) / 100:.4f}")
for row in h["table"]:
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
