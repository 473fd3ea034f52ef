"""affine: a fully connected layer, out = x @ w + b.

Shapes: x (N, D), w (D, M), b (M,), out (N, M). For the upstream gradient
dout = d loss / d out (N, M):

    dx = dout @ w.T      (N, D)
    dw = x.T @ dout      (D, M)
    db = sum_n dout[n]   (M,)
"""

import numpy as np


def affine_forward(x, w, b):
    """Compute out = x @ w + b.

    Args:
        x: inputs, (N, D); w: weights, (D, M); b: biases, (M,).

    Returns:
        (out, cache): out (N, M), and the cache that affine_backward needs.
    """
    ### BEGIN SOLUTION
    out = x @ w + b  # b broadcasts over the N rows
    return out, (x, w)
    ### END SOLUTION


def affine_backward(dout, cache):
    """Gradients of the loss with respect to the inputs of affine_forward.

    Args:
        dout: upstream gradient d loss / d out, (N, M).
        cache: what affine_forward returned.

    Returns:
        (dx, dw, db) of shapes (N, D), (D, M), (M,).
    """
    ### BEGIN SOLUTION
    x, w = cache
    dx = dout @ w.T
    dw = x.T @ dout
    db = dout.sum(axis=0)  # b was added to every row, so its gradient sums over them
    return dx, dw, db
    ### END SOLUTION


if __name__ == "__main__":
    from gradient_check import layer_errors  # support file, copied beside this one

    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    layer_errors(affine_forward, affine_backward, {"x": x, "w": w, "b": b})
