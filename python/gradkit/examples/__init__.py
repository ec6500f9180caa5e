"""Runnable examples: ``python -m gradkit.examples.fashion_mnist [--model cnn|mlp]``."""
