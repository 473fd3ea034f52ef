"""mlp: the five documents generalised to any depth, widths, activations and loss.

One example per COLUMN (x: (n0, m), y: (nL, m)); for l = 1..L:

    z[l] = W[l] @ a[l-1] + b[l];   a[l] = g[l](z[l]);   a[0] = x
    W[l]: (n[l], n[l-1]),  b[l]: (n[l], 1)

    loss = 0.5 * sum((y - a[L])**2)                       # loss="squared"
    loss = -sum(y * log(a[L]) + (1 - y) * log(1 - a[L]))  # loss="cross_entropy"

The configuration comes as keyword arguments of fprop: ``activations`` (one name per
layer among sigmoid, tanh, relu, identity; default sigmoid everywhere) and ``loss``.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Each activation with its derivative, written in terms of z (the pre-activation).
ACTIVATIONS = {
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * (1.0 - sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
    "identity": (lambda z: z, np.ones_like),
}


def fprop(x, y, params, activations=None, loss="squared"):
    """Forward pass; returns the cache that bprop needs, including "loss"."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def bprop(cache):
    """Backward pass; returns the gradient of the loss for every W[l] and b[l]."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


if __name__ == "__main__":
    # Check your bprop against finite differences of your own fprop, on a random batch.
    import gradcheck

    network = gradcheck.networks.get("mlp")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="mlp",
    )
    print(report)
