"""Finite-difference helpers to check your layers yourself (copied beside your files).

Each ``*_errors`` function prints, for every input, the max relative error between your
analytic gradient and centered differences; below about 1e-7 means the gradient is right.
Only numpy is needed::

    from gradient_check import layer_errors
    layer_errors(affine_forward, affine_backward, {"x": x, "w": w, "b": b})
"""

import numpy as np

__all__ = ["eval_numerical_gradient_array", "layer_errors", "loss_errors", "network_errors",
           "rel_error"]


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Centered differences of ``sum(f(x) * df)`` with respect to the array ``x``.

    ``x`` is changed in place one entry at a time and restored, so ``f`` must read that
    same array (a lambda over your inputs does). Use ``df=1.0`` when ``f`` is a scalar loss.
    """
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.sum(f(x) * df)
        x[i] = old - h
        minus = np.sum(f(x) * df)
        x[i] = old  # restore exactly, or the next entries are measured at the wrong point
        grad[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(analytic, numerical):
    """Max of ``|a - n| / max(|a| + |n|, 1e-8)``; ``inf`` when the shapes differ."""
    analytic = np.asarray(analytic, dtype=float)
    if analytic.shape != numerical.shape:
        return float("inf")  # broadcasting would hide a transposed gradient
    scale = np.maximum(np.abs(analytic) + np.abs(numerical), 1e-8)
    return float(np.max(np.abs(analytic - numerical) / scale))


def _report(name, analytic, numerical):
    error = rel_error(analytic, numerical)
    shape = np.shape(analytic)
    note = "" if shape == numerical.shape else f"  (shape {shape}, expected {numerical.shape})"
    print(f"d{name}: max relative error {error:.1e}{note}")
    return error


def layer_errors(forward, backward, inputs, seed=12345):
    """Check ``backward(dout, cache)`` against finite differences of ``forward``.

    Args:
        inputs: forward's arguments by name, in order; the gradients are those of the
            float arrays, in that order (dicts such as ``conv_param`` are passed as they are).
        seed: for the random ``dout``; not 0, which would draw a ``dout`` equal to an input
            drawn with seed 0 (batchnorm's dx is then zero and checks nothing).
    """
    out, cache = forward(*inputs.values())
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    names = [k for k, v in inputs.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    return {name: _report(name, grad, eval_numerical_gradient_array(
                lambda _: forward(*inputs.values())[0], inputs[name], dout))
            for name, grad in zip(names, grads)}


def loss_errors(loss_fn, x, y):
    """Check the ``dx`` of ``loss, dx = loss_fn(x, y)`` against finite differences."""
    _, dx = loss_fn(x, y)
    numerical = eval_numerical_gradient_array(lambda _: loss_fn(x, y)[0], x, 1.0)
    return {"x": _report("x", dx, numerical)}


def network_errors(fprop, bprop, x, y, params):
    """Check every gradient of ``bprop(fprop(x, y, params))`` against finite differences."""
    grads = bprop(fprop(x, y, params))
    return {name: _report(name, grads[name], eval_numerical_gradient_array(
                lambda _: fprop(x, y, params)["loss"], params[name], 1.0))
            for name in params}
