"""batchnorm: batch normalization in train mode, per feature over the batch.

Shapes: x (N, D), gamma (D,), beta (D,), out (N, D). With the batch statistics

    mu = mean_n x[n],   var = mean_n (x[n] - mu)**2,   xhat = (x - mu) / sqrt(var + eps)
    out = gamma * xhat + beta

the backward pass is (dxhat = dout * gamma; sums over the batch axis):

    dbeta  = sum_n dout[n]
    dgamma = sum_n dout[n] * xhat[n]
    dx     = 1 / (N sqrt(var + eps)) * (N dxhat - sum_n dxhat[n] - xhat * sum_n dxhat[n] xhat[n])

The middle term comes through mu, the last one through var: every x[n] moves the batch
statistics, so each output depends on the whole column.
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Normalize each feature over the batch, then scale by gamma and shift by beta.

    Args:
        x: inputs, (N, D); gamma: scales, (D,); beta: shifts, (D,).
        bn_param: {"mode": "train", "eps": 1e-5}; only train mode is part of this
            assignment (no running averages, so bn_param is never modified).

    Returns:
        (out, cache): out (N, D), and the cache that batchnorm_backward needs.
    """
    if bn_param.get("mode", "train") != "train":
        raise ValueError("this assignment implements train mode only")
    mu = x.mean(axis=0)
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + bn_param.get("eps", 1e-5))
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def batchnorm_backward(dout, cache):
    """Gradients of the loss with respect to x, gamma and beta (the compact formula).

    Args:
        dout: upstream gradient, (N, D).
        cache: what batchnorm_forward returned.

    Returns:
        (dx, dgamma, dbeta) of shapes (N, D), (D,), (D,).
    """
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    # The mean term (through mu) and the variance term (through var) of d xhat / d x.
    dx = inv_std / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, dgamma, dbeta


if __name__ == "__main__":
    from gradient_check import layer_errors  # support file, copied beside this one

    rng = np.random.default_rng(0)
    x, gamma, beta = rng.standard_normal((4, 5)), rng.uniform(0.5, 1.5, 5), rng.standard_normal(5)
    layer_errors(batchnorm_forward, batchnorm_backward,
                 {"x": x, "gamma": gamma, "beta": beta, "bn_param": {"mode": "train", "eps": 1e-5}})
