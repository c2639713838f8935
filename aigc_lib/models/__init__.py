"""Models, one file per family: find a model by what it is."""
