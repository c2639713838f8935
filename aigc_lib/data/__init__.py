"""Data loaders: MNIST digits, Shakespeare's works and 2-D toy distributions."""
from aigc_lib.data.mnist import load_mnist
from aigc_lib.data.shakespeare import ShakespeareCorpus, load_shakespeare
from aigc_lib.data.toy import ring, ring_modes, spiral, two_moons

__all__ = ["load_mnist", "load_shakespeare", "ShakespeareCorpus", "ring", "ring_modes",
           "spiral", "two_moons"]
