"""``python -m gradcheck``: check every bundled solution, then show a wrong gradient diagnosed."""

from __future__ import annotations

import numpy as np

from . import networks
from .checking import check_gradients


def main() -> int:
    for network in networks.all_networks():
        solution = network.solution()
        example = network.random_example(np.random.default_rng(0), m=4)
        report = check_gradients(solution.fprop, solution.bprop, example.x, example.y,
                                 example.params, fprop_kwargs=example.options, name=network.name)
        print(f"{'ok  ' if report.ok else 'FAIL'} {network.name:<18} max relative error "
              f"{report.max_relative_error:.1e}  ({network.summary})")
    print()
    print("Document 000 publishes dW2 = [-0.01736, 0.02604] for its worked example; checked:")
    three_node = networks.get("three_node")
    example, solution = three_node.worked_examples[0], three_node.solution()

    def documents_bprop(cache: dict) -> dict:
        grads = solution.bprop(cache)
        grads["W2"] = example.expected["document_grads"]["W2"]
        return grads

    print(check_gradients(solution.fprop, documents_bprop, example.x, example.y, example.params,
                          name="three_node (document 000's own numbers)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
