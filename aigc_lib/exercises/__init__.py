"""Checked exercises, one module per chapter topic (``vae.py`` for ``notebooks/vae.ipynb``).

In a notebook::

    from aigc_lib.exercises import check
    check("vae.gaussian_kl", gaussian_kl)   # shows a pass line, or what differed and a hint

``core.py`` says how an exercise is declared; a new topic module is found without an edit here.
"""
from aigc_lib.exercises.core import Exercise, Mistake, Report, check, exercise, exercises, get, reference

__all__ = ["Exercise", "Mistake", "Report", "check", "exercise", "exercises", "get", "reference"]
