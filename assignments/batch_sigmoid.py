"""batch_sigmoid: document 001 ("Neural Networks II: First Contact").

2 inputs -> 3 sigmoid hidden units -> 1 sigmoid output, no biases, one example per ROW,
in the notation of "Neural Networks Demystified":

    z2   = X @ W1;   a2   = sigma(z2)       X: (m, 2), W1: (2, 3)
    z3   = a2 @ W2;  yHat = sigma(z3)       W2: (3, 1)
    J    = 0.5 * sum((y - yHat)**2)
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    s = sigmoid(z)
    return s * (1.0 - s)


def fprop(x, y, params):
    """Forward pass; returns the cache that bprop needs, including "loss"."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def bprop(cache):
    """Backward pass; returns {"W1": dJ/dW1, "W2": dJ/dW2}."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


if __name__ == "__main__":
    # Check your bprop against finite differences of your own fprop, on a random batch.
    import gradcheck

    network = gradcheck.networks.get("batch_sigmoid")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="batch_sigmoid",
    )
    print(report)
