"""softmax: the softmax (cross-entropy) loss of class scores, averaged over the batch.

Shapes: x (N, C) scores, y (N,) integer labels in [0, C). With p = softmax of each row,

    loss = -1/N sum_n log p[n, y[n]]
    dx   = (p - onehot(y)) / N
"""

import numpy as np


def softmax_loss(x, y):
    """Softmax loss and its gradient with respect to the scores.

    Args:
        x: scores, (N, C); y: labels, (N,), integers in [0, C).

    Returns:
        (loss, dx): the mean loss (a float) and d loss / d x, (N, C).
    """
    n = x.shape[0]
    # Subtracting each row's max changes no probability but keeps exp from overflowing.
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), y].mean()
    dx = np.exp(log_p)
    dx[np.arange(n), y] -= 1.0
    return float(loss), dx / n  # the loss is a mean, so each row's gradient is 1/N of it


if __name__ == "__main__":
    from gradient_check import loss_errors  # support file, copied beside this one

    rng = np.random.default_rng(0)
    loss_errors(softmax_loss, rng.standard_normal((5, 3)), rng.integers(0, 3, 5))
