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
    ### BEGIN SOLUTION
    n_layers = len(params) // 2
    activations = tuple(activations or ("sigmoid",) * n_layers)
    a, zs, inputs = x, [], []
    for layer, name in enumerate(activations, start=1):
        inputs.append(a)  # a[l-1], needed for dW[l]
        z = params[f"W{layer}"] @ a + params[f"b{layer}"]
        zs.append(z)
        a = ACTIVATIONS[name][0](z)
    if loss == "squared":
        value = 0.5 * np.sum((y - a) ** 2)
    else:
        value = -np.sum(y * np.log(a) + (1 - y) * np.log(1 - a))
    return {"y": y, "a": a, "zs": zs, "inputs": inputs, "activations": activations,
            "loss_name": loss, "params": params, "loss": value}
    ### END SOLUTION


def bprop(cache):
    """Backward pass; returns the gradient of the loss for every W[l] and b[l]."""
    ### BEGIN SOLUTION
    y, a, zs, inputs = (cache[k] for k in ("y", "a", "zs", "inputs"))
    activations, params = cache["activations"], cache["params"]
    if cache["loss_name"] == "cross_entropy":
        # With a sigmoid output, the sigmoid's derivative cancels: dloss/dz[L] = a[L] - y.
        delta = a - y
    else:
        delta = (a - y) * ACTIVATIONS[activations[-1]][1](zs[-1])
    grads = {}
    for layer in range(len(activations), 0, -1):
        grads[f"W{layer}"] = delta @ inputs[layer - 1].T
        grads[f"b{layer}"] = np.sum(delta, axis=1, keepdims=True)
        if layer > 1:
            # Back through W[l], then through g'(z[l-1]) at the PRE-activation.
            delta = (params[f"W{layer}"].T @ delta) * ACTIVATIONS[activations[layer - 2]][1](zs[layer - 2])
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

    network = gradcheck.networks.get("mlp")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="mlp",
    )
    print(report)
