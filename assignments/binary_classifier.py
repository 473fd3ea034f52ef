"""binary_classifier: document 003 ("Overview of Steps for Neural Networks").

2 inputs -> H sigmoid hidden units -> 1 sigmoid output, with biases, one example per
COLUMN (x: (2, m), y: (1, m) in {0, 1}); H = 2 in the document, any H >= 1 works:

    z1 = W1 @ x + b1;   a1 = sigma(z1)       W1: (H, 2), b1: (H, 1)
    z2 = W2 @ a1 + b2;  a2 = sigma(z2)       W2: (1, H), b2: (1, 1)
    loss = -sum(y * log(a2) + (1 - y) * log(1 - a2))

This follows the document's code, fixed for batches: its loss is summed to a scalar and
its bias gradients are summed over the examples.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fprop(x, y, params):
    """Forward pass; returns the cache that bprop needs, including "loss"."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def bprop(cache):
    """Backward pass; returns the gradient of the loss for W1, b1, W2, b2."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


if __name__ == "__main__":
    # Check your bprop against finite differences of your own fprop, on a random batch.
    import gradcheck

    network = gradcheck.networks.get("binary_classifier")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="binary_classifier",
    )
    print(report)
