"""conv: a naive 2-D convolution (cross-correlation, as in every deep learning library).

Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param {"stride": s, "pad": p}.
x is padded with p zeros on each side of H and W, then each filter slides with step s:

    H' = 1 + (H + 2p - HH) / s,   W' = 1 + (W + 2p - WW) / s
    out[n, f, i, j] = sum_{c, k, l} xpad[n, c, s i + k, s j + l] * w[f, c, k, l] + b[f]

so out is (N, F, H', W'). Backward, with the window at (i, j) as above:

    dw[f]          += sum_n dout[n, f, i, j] * window(n)
    dxpad[window]  += sum_f dout[n, f, i, j] * w[f]
    db[f]           = sum_{n, i, j} dout[n, f, i, j]

and dx is dxpad without its padding (the zeros are not inputs).
"""

import numpy as np


def conv_forward_naive(x, w, b, conv_param):
    """Convolve the padded x with every filter, one output position at a time.

    Args:
        x: images, (N, C, H, W); w: filters, (F, C, HH, WW); b: biases, (F,).
        conv_param: {"stride": s, "pad": p}, with (H + 2p - HH) and (W + 2p - WW)
            multiples of s.

    Returns:
        (out, cache): out (N, F, H', W'), and the cache that conv_backward_naive needs.
    """
    s, p = conv_param["stride"], conv_param["pad"]
    _, _, hh, ww = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h_out = 1 + (xpad.shape[2] - hh) // s
    w_out = 1 + (xpad.shape[3] - ww) // s
    out = np.empty((x.shape[0], w.shape[0], h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            window = xpad[:, :, i * s:i * s + hh, j * s:j * s + ww]  # (N, C, HH, WW)
            out[:, :, i, j] = np.einsum("nckl,fckl->nf", window, w) + b
    return out, (x.shape, xpad, w, conv_param)


def conv_backward_naive(dout, cache):
    """Gradients of the loss with respect to x, w and b.

    Args:
        dout: upstream gradient, (N, F, H', W').
        cache: what conv_forward_naive returned.

    Returns:
        (dx, dw, db) of shapes (N, C, H, W), (F, C, HH, WW), (F,).
    """
    x_shape, xpad, w, conv_param = cache
    s, p = conv_param["stride"], conv_param["pad"]
    _, _, hh, ww = w.shape
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows, cols = slice(i * s, i * s + hh), slice(j * s, j * s + ww)
            g = dout[:, :, i, j]  # (N, F): how much each window's output matters
            dw += np.einsum("nf,nckl->fckl", g, xpad[:, :, rows, cols])
            # += because windows overlap when the stride is smaller than the filter.
            dxpad[:, :, rows, cols] += np.einsum("nf,fckl->nckl", g, w)
    db = dout.sum(axis=(0, 2, 3))
    dx = dxpad[:, :, p:p + x_shape[2], p:p + x_shape[3]]  # crop the padding away
    return dx, dw, db


if __name__ == "__main__":
    from gradient_check import layer_errors  # support file, copied beside this one

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    layer_errors(conv_forward_naive, conv_backward_naive,
                 {"x": x, "w": w, "b": b, "conv_param": {"stride": 2, "pad": 1}})
