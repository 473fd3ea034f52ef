"""Document 003's gradient-checking loop, ported to Python 3, gives numerical_gradient's numbers.

The original is Python 2 (``xrange``, ``print key``) and never imports ``copy``; the port
changes only that. Its cost is O(P^2): it copies every array for every entry.
"""

from copy import copy

import numpy as np

from gradcheck import networks, numerical_gradient


def document_003_loop(fprop, x, y, params, eps=1e-6):
    ng_cache = {}
    for key in params:
        param = params[key]
        ng = np.zeros(param.shape)
        for j in range(ng.shape[0]):
            for k in range(ng.shape[1]):  # was: xrange
                add_eps = np.copy(param)
                min_eps = np.copy(param)
                add_eps[j, k] += eps
                min_eps[j, k] -= eps
                add_params = copy(params)  # was: copy used without import
                min_params = copy(params)
                add_params[key] = add_eps
                min_params[key] = min_eps
                fprop_new = fprop(x, y, add_params)["loss"]
                fprop_min = fprop(x, y, min_params)["loss"]
                ng[j, k] = (fprop_new - fprop_min) / (2 * eps)
        ng_cache[key] = ng
    return ng_cache


def test_the_document_loop_and_numerical_gradient_agree_on_its_own_network():
    net = networks.get("binary_classifier")
    solution = net.solution()
    for seed in range(3):
        example = net.random_example(np.random.default_rng(seed), m=3, hidden=2)
        expected = document_003_loop(solution.fprop, example.x, example.y, example.params)
        params = {k: v.copy() for k, v in example.params.items()}
        ours = numerical_gradient(lambda p: solution.fprop(example.x, example.y, p)["loss"], params)
        for key in expected:
            np.testing.assert_allclose(ours[key], expected[key], rtol=1e-9, atol=1e-12)
