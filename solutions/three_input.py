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
    ### BEGIN SOLUTION
    W1, W2 = params["W1"], params["W2"]
    a1 = sigmoid(W1 @ x)
    a2 = sigmoid(W2 @ a1)
    loss = 0.5 * np.sum((y - a2) ** 2)
    return {"x": x, "y": y, "a1": a1, "a2": a2, "W2": W2, "loss": loss}
    ### END SOLUTION


def bprop(cache):
    """Backward pass; returns {"W1": dloss/dW1, "W2": dloss/dW2}."""
    ### BEGIN SOLUTION
    x, y, a1, a2, W2 = (cache[k] for k in ("x", "y", "a1", "a2", "W2"))
    # The three factors of the document: dC/da2, da2/dz2 = a2 (1 - a2), dz2/dw = a1.
    delta2 = (a2 - y) * a2 * (1.0 - a2)  # (1, m)
    dW2 = delta2 @ a1.T  # (1, m) @ (m, 2)
    # The hidden layer: back through W2, then through sigma'(z1) = a1 (1 - a1).
    delta1 = (W2.T @ delta2) * a1 * (1.0 - a1)  # (2, m)
    dW1 = delta1 @ x.T  # (2, m) @ (m, 3)
    return {"W1": dW1, "W2": dW2}
    ### END SOLUTION


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    ### BEGIN SOLUTION
    return {key: params[key] - lr * grads[key] for key in params}
    ### END SOLUTION


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
