"""relu: the rectified linear unit, out = max(x, 0), entry by entry.

Shapes: x (N, D), out (N, D). Its derivative is 1 where x > 0 and 0 where x < 0 (at
x = 0 it has a kink, which the hidden examples avoid), so:

    dx = dout * (x > 0)
"""

import numpy as np


def relu_forward(x):
    """Compute out = max(x, 0).

    Args:
        x: inputs of any shape, here (N, D).

    Returns:
        (out, cache): out of the shape of x, and the cache that relu_backward needs.
    """
    return np.maximum(x, 0.0), x


def relu_backward(dout, cache):
    """Gradient of the loss with respect to the input of relu_forward.

    Args:
        dout: upstream gradient, of the shape of x.
        cache: what relu_forward returned.

    Returns:
        dx, of the shape of x.
    """
    x = cache
    return dout * (x > 0)  # the gradient passes where the unit was active, else stops


if __name__ == "__main__":
    from gradient_check import layer_errors  # support file, copied beside this one

    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, (4, 5)) * rng.choice([-1.0, 1.0], (4, 5))  # away from the kink
    layer_errors(relu_forward, relu_backward, {"x": x})
