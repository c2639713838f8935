"""aigc_lib: models, losses, training loops, samplers, metrics and data for the book
*AIGC: Principles and Practice*.

Every notebook imports from here; every function here is tested in ``tests/``.
"""
from aigc_lib.config import by_profile, cache_dir, device, generator, profile, run_seed, seed_everything

__version__ = "0.1.0"
__all__ = ["by_profile", "cache_dir", "device", "generator", "profile", "run_seed", "seed_everything"]
