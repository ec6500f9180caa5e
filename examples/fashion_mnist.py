"""Train the Fashion-MNIST CNN (the README quickstart). Options: --help.

Same as ``python -m gradkit.examples.fashion_mnist``; ``--model mlp`` trains the MLP.
"""
from gradkit.examples.fashion_mnist import main

if __name__ == "__main__":
    main()
