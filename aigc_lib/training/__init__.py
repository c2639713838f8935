"""Training loops, one module per model family (gan, vae, lm)."""
