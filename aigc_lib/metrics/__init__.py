"""Metrics: image (MNIST-FID), toy (ring modes), text (perplexity, diversity)."""
