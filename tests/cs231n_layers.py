"""A small layer library in the CS231n convention, written from the math (tests only).

``*_forward(...) -> (out, cache)``, ``*_backward(dout, cache) -> grads in input order``;
losses return ``(loss, dx)``. gradcheck must check these as they are, with no adapter.
"""

from __future__ import annotations

import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, _ = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0.0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def batchnorm_forward(x, gamma, beta, bn_param):
    """Training-mode batch norm; updates bn_param's running averages, as CS231n's does."""
    eps, momentum = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    mean, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mean) / np.sqrt(var + eps)
    d = x.shape[1]
    bn_param["running_mean"] = momentum * bn_param.get("running_mean", np.zeros(d)) + (1 - momentum) * mean
    bn_param["running_var"] = momentum * bn_param.get("running_var", np.zeros(d)) + (1 - momentum) * var
    return gamma * xhat + beta, (xhat, gamma, np.sqrt(var + eps))


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (n * std)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def conv_forward_naive(x, w, b, conv_param):
    """Naive convolution with padding and stride: a loop over the kernel's offsets."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    n, c, height, width = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h_out, w_out = 1 + (height + 2 * pad - hh) // stride, 1 + (width + 2 * pad - ww) // stride
    out = np.zeros((n, f, h_out, w_out)) + b[None, :, None, None]
    for i in range(hh):
        for j in range(ww):
            window = xp[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
            out += np.einsum("nchw,fc->nfhw", window, w[:, :, i, j])
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    x, w, _, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, hh, ww = w.shape
    h_out, w_out = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(hh):
        for j in range(ww):
            rows, cols = slice(i, i + stride * h_out, stride), slice(j, j + stride * w_out, stride)
            dw[:, :, i, j] = np.einsum("nfhw,nchw->fc", dout, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", dout, w[:, :, i, j])
    dx = dxp[:, :, pad:dxp.shape[2] - pad, pad:dxp.shape[3] - pad]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def max_pool_forward_naive(x, pool_param):
    size, stride = pool_param["pool_height"], pool_param["stride"]
    n, c, height, width = x.shape
    h_out, w_out = 1 + (height - size) // stride, 1 + (width - size) // stride
    out = np.zeros((n, c, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    size, stride = pool_param["pool_height"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * stride:i * stride + size, j * stride:j * stride + size] += mask * dout[:, :, i, j][:, :, None, None]
    return dx


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    dx = np.exp(log_p)
    dx[np.arange(n), y] -= 1
    return -log_p[np.arange(n), y].sum() / n, dx / n


def svm_loss(x, y):
    n = x.shape[0]
    margins = np.maximum(0, x - x[np.arange(n), y][:, None] + 1.0)
    margins[np.arange(n), y] = 0
    dx = (margins > 0).astype(float)
    dx[np.arange(n), y] -= dx.sum(axis=1)
    return margins.sum() / n, dx / n


def svm_loss_naive(W, X, y, reg):
    """CS231n's (W, X, y, reg) -> (loss, dW) convention."""
    scores = X @ W
    loss, dx = svm_loss(scores, y)
    return loss + reg * np.sum(W * W), X.T @ dx + 2 * reg * W


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """Two outputs before the cache: (next_h, next_c, cache)."""
    a = x @ Wx + prev_h @ Wh + b
    h = prev_h.shape[1]
    i, f, o, g = sigmoid(a[:, :h]), sigmoid(a[:, h:2 * h]), sigmoid(a[:, 2 * h:3 * h]), np.tanh(a[:, 3 * h:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc**2)
    da = np.hstack([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * tc * o * (1 - o),
                    dc * i * (1 - g**2)])
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)
