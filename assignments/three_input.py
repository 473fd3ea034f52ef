"""three_input: document 004 ("The Journey of Backpropagation in Neural Networks").

3 inputs -> 2 sigmoid hidden units -> 1 sigmoid output, no biases, one example per
COLUMN (x: (3, m), y: (1, m)); w1..w6 form W1, w7 and w8 form W2:

    z1 = W1 @ x;   a1 = sigma(z1)       W1: (2, 3)
    z2 = W2 @ a1;  a2 = sigma(z2)       W2: (1, 2)
    loss = 0.5 * sum((y - a2)**2)
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fprop(x, y, params):
    """Forward pass; returns the cache that bprop needs, including "loss"."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def bprop(cache):
    """Backward pass; returns {"W1": dloss/dW1, "W2": dloss/dW2}."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    # YOUR CODE HERE
    raise NotImplementedError("write this function")


if __name__ == "__main__":
    # Check your bprop against finite differences of your own fprop, on a random batch.
    import gradcheck

    network = gradcheck.networks.get("three_input")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="three_input",
    )
    print(report)
