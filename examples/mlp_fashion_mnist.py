"""Train the Fashion-MNIST MLP (784-512-256-10). Options: --help.

Same as ``python -m gradkit.examples.fashion_mnist --model mlp``.
"""
import sys

from gradkit.examples.fashion_mnist import main

if __name__ == "__main__":
    main(["--model", "mlp"] + sys.argv[1:])
