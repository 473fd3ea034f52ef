"""two_layer_net: affine - relu - affine - softmax, loss averaged over the batch.

Shapes: x (N, D), y (N,) labels in [0, C); W1 (D, H), b1 (H,), W2 (H, C), b2 (C,).

    h = x @ W1 + b1,   a = max(h, 0),   scores = a @ W2 + b2
    loss = -1/N sum_n log softmax(scores[n])[y[n]]

Backward, from dscores = (softmax(scores) - onehot(y)) / N:

    dW2 = a.T @ dscores,   db2 = sum_n dscores[n],   dh = (dscores @ W2.T) * (h > 0)
    dW1 = x.T @ dh,        db1 = sum_n dh[n]

You may import your own layers (``from affine import affine_forward``...) instead.
"""

import numpy as np


def fprop(x, y, params):
    """Forward pass.

    Args:
        x: inputs, (N, D); y: labels, (N,); params: {"W1", "b1", "W2", "b2"}.

    Returns:
        The cache that bprop needs, with the mean loss under "loss".
    """
    h = x @ params["W1"] + params["b1"]
    a = np.maximum(h, 0.0)
    scores = a @ params["W2"] + params["b2"]
    shifted = scores - scores.max(axis=1, keepdims=True)  # stable: exp never overflows
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(len(y)), y].mean()
    return {"x": x, "y": y, "h": h, "a": a, "p": np.exp(log_p), "W2": params["W2"],
            "loss": float(loss)}


def bprop(cache):
    """Backward pass.

    Args:
        cache: what fprop returned.

    Returns:
        {"W1", "b1", "W2", "b2"}: the gradients of the loss, of the parameters' shapes.
    """
    x, y, h, a = cache["x"], cache["y"], cache["h"], cache["a"]
    dscores = cache["p"].copy()  # a copy: bprop must not change the cache
    dscores[np.arange(len(y)), y] -= 1.0
    dscores /= len(y)
    dh = (dscores @ cache["W2"].T) * (h > 0)
    return {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": a.T @ dscores, "b2": dscores.sum(axis=0)}


def update(params, grads, lr):
    """One step of gradient descent.

    Args:
        params: the parameters; grads: their gradients (same keys); lr: the step size.

    Returns:
        A new dict, p - lr * dp for every parameter (params is left unchanged).
    """
    return {key: params[key] - lr * grads[key] for key in params}


if __name__ == "__main__":
    from gradient_check import network_errors  # support file, copied beside this one

    rng = np.random.default_rng(0)
    shapes = {"W1": (4, 6), "b1": (6,), "W2": (6, 3), "b2": (3,)}
    params = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    network_errors(fprop, bprop, rng.standard_normal((5, 4)), rng.integers(0, 3, 5), params)
