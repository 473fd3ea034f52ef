"""two_hidden: document 002 ("A Closer Look Into The Math Behind Gradient Descent").

2 inputs -> 2 sigmoid -> 2 sigmoid -> 1 sigmoid output, with biases, one example per
COLUMN (x: (2, m), y: (1, m)); for l = 1, 2, 3:

    z[l] = W[l] @ a[l-1] + b[l];   a[l] = sigma(z[l]);   a[0] = x
    loss = 0.5 * sum((y - a[3])**2)

Shapes: W1 (2, 2), b1 (2, 1), W2 (2, 2), b2 (2, 1), W3 (1, 2), b3 (1, 1).
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fprop(x, y, params):
    """Forward pass; returns the cache that bprop needs, including "loss"."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def bprop(cache):
    """Backward pass; returns the gradient of the loss for W1, b1, W2, b2, W3, b3."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


if __name__ == "__main__":
    # Check your bprop against finite differences of your own fprop, on a random batch.
    import gradcheck

    network = gradcheck.networks.get("two_hidden")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="two_hidden",
    )
    print(report)
