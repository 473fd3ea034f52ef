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
    ### BEGIN SOLUTION
    W1, W2 = params["W1"], params["W2"]
    z2 = x @ W1
    a2 = sigmoid(z2)
    z3 = a2 @ W2
    yhat = sigmoid(z3)
    loss = 0.5 * np.sum((y - yhat) ** 2)
    return {"X": x, "y": y, "z2": z2, "a2": a2, "z3": z3, "yHat": yhat, "W2": W2, "loss": loss}
    ### END SOLUTION


def bprop(cache):
    """Backward pass; returns {"W1": dJ/dW1, "W2": dJ/dW2}."""
    ### BEGIN SOLUTION
    X, y, z2, a2, z3, yhat, W2 = (cache[k] for k in ("X", "y", "z2", "a2", "z3", "yHat", "W2"))
    # delta3 is the "back propagated error" of the document: -(y - yHat) * sigma'(z3).
    delta3 = -(y - yhat) * sigmoid_prime(z3)  # (m, 1)
    dW2 = a2.T @ delta3  # (3, m) @ (m, 1): summing over the batch happens in the product
    # delta2 = delta3 W2^T * sigma'(z2): the derivative at the PRE-activation z2.
    delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)  # (m, 3)
    dW1 = X.T @ delta2  # (2, m) @ (m, 3)
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

    network = gradcheck.networks.get("batch_sigmoid")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="batch_sigmoid",
    )
    print(report)
