"""Data loaders: MNIST digits, Shakespeare's works, 2-D toy distributions and a toy sequence task."""
from aigc_lib.data.mnist import load_mnist
from aigc_lib.data.shakespeare import ShakespeareCorpus, load_shakespeare
from aigc_lib.data.toy import reversal_task, ring, ring_modes, spiral, two_moons

__all__ = ["load_mnist", "load_shakespeare", "ShakespeareCorpus", "reversal_task", "ring", "ring_modes",
           "spiral", "two_moons"]
