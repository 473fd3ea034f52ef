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
    ### BEGIN SOLUTION
    a0 = x
    a1 = sigmoid(params["W1"] @ a0 + params["b1"])
    a2 = sigmoid(params["W2"] @ a1 + params["b2"])
    a3 = sigmoid(params["W3"] @ a2 + params["b3"])
    loss = 0.5 * np.sum((y - a3) ** 2)
    return {"a0": a0, "a1": a1, "a2": a2, "a3": a3, "y": y,
            "W2": params["W2"], "W3": params["W3"], "loss": loss}
    ### END SOLUTION


def bprop(cache):
    """Backward pass; returns the gradient of the loss for W1, b1, W2, b2, W3, b3."""
    ### BEGIN SOLUTION
    a0, a1, a2, a3, y = (cache[k] for k in ("a0", "a1", "a2", "a3", "y"))
    # sigma'(z) = a * (1 - a): the derivative written with the activation a = sigma(z).
    delta3 = (a3 - y) * a3 * (1.0 - a3)  # (1, m)
    delta2 = (cache["W3"].T @ delta3) * a2 * (1.0 - a2)  # (2, m)
    delta1 = (cache["W2"].T @ delta2) * a1 * (1.0 - a1)  # (2, m)
    grads = {}
    for layer, delta, a_prev in ((3, delta3, a2), (2, delta2, a1), (1, delta1, a0)):
        # Columns layout: dW = delta @ a_prev.T; the bias sums delta over the batch (axis 1).
        grads[f"W{layer}"] = delta @ a_prev.T
        grads[f"b{layer}"] = np.sum(delta, axis=1, keepdims=True)
    return grads
    ### END SOLUTION


def update(params, grads, lr):
    """One step of gradient descent: a new dict, p - lr * dp for every parameter."""
    ### BEGIN SOLUTION
    return {key: params[key] - lr * grads[key] for key in params}
    ### END SOLUTION


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
