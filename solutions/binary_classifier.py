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
    ### BEGIN SOLUTION
    W1, b1, W2, b2 = (params[k] for k in ("W1", "b1", "W2", "b2"))
    z1 = W1 @ x + b1
    a1 = sigmoid(z1)
    z2 = W2 @ a1 + b2
    a2 = sigmoid(z2)
    loss = -np.sum(y * np.log(a2) + (1 - y) * np.log(1 - a2))
    return {"x": x, "y": y, "z1": z1, "a1": a1, "z2": z2, "a2": a2, "W2": W2, "loss": loss}
    ### END SOLUTION


def bprop(cache):
    """Backward pass; returns the gradient of the loss for W1, b1, W2, b2."""
    ### BEGIN SOLUTION
    x, y, z1, a1, a2 = (cache[k] for k in ("x", "y", "z1", "a1", "a2"))
    # Cross-entropy and sigmoid together: dloss/dz2 = a2 - y (the sigma' cancels).
    dz2 = a2 - y  # (1, m)
    dW2 = dz2 @ a1.T  # (1, m) @ (m, H)
    db2 = np.sum(dz2, axis=1, keepdims=True)  # sum over the batch: (1, 1)
    dz1 = (cache["W2"].T @ dz2) * sigmoid(z1) * (1 - sigmoid(z1))  # (H, m)
    dW1 = dz1 @ x.T  # (H, m) @ (m, 2)
    db1 = np.sum(dz1, axis=1, keepdims=True)  # (H, 1)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
    ### END SOLUTION


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    ### BEGIN SOLUTION
    return {key: params[key] - lr * grads[key] for key in params}
    ### END SOLUTION


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
