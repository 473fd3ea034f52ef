"""three_node: document 000 (B. S. Knight, "Understanding Neural Nets Forwards and Backwards").

2 inputs -> 2 linear hidden units -> 1 sigmoid output, no biases, one example per ROW:

    h    = x @ W1          x: (m, 2), W1: (2, 2), h: (m, 2)
    o    = h @ W2          W2: (2, 1), o: (m, 1)
    yhat = sigma(o)
    loss = 0.5 * sum((y - yhat)**2)

The document's own backward pass is wrong in five of six updates (it applies the sigmoid
derivative twice and forgets W2 for the hidden weights); this is the corrected one.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fprop(x, y, params):
    """Forward pass; returns the cache that bprop needs, including "loss"."""
    ### BEGIN SOLUTION
    W1, W2 = params["W1"], params["W2"]
    h = x @ W1  # the hidden layer is linear: no activation here
    o = h @ W2
    yhat = sigmoid(o)
    loss = 0.5 * np.sum((y - yhat) ** 2)
    return {"x": x, "y": y, "h": h, "yhat": yhat, "W2": W2, "loss": loss}
    ### END SOLUTION


def bprop(cache):
    """Backward pass; returns {"W1": dloss/dW1, "W2": dloss/dW2}."""
    ### BEGIN SOLUTION
    x, y, h, yhat, W2 = (cache[k] for k in ("x", "y", "h", "yhat", "W2"))
    # dloss/dyhat = (yhat - y); the sigmoid derivative is applied ONCE: yhat * (1 - yhat).
    delta_o = (yhat - y) * yhat * (1.0 - yhat)  # (m, 1)
    dW2 = h.T @ delta_o  # (2, m) @ (m, 1): rows-layout gradients are input.T @ delta
    delta_h = delta_o @ W2.T  # back through W2 (the factor the document forgets)
    dW1 = x.T @ delta_h  # no activation derivative: the hidden layer is linear
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

    network = gradcheck.networks.get("three_node")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="three_node",
    )
    print(report)
