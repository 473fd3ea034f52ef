"""CS231n-style layers: an example course for gradcheck, beside the documents' networks.

Students write NumPy layers in the CS231n convention: ``*_forward(...) -> (out, cache)``
and ``*_backward(dout, cache) -> gradients``, a softmax loss ``(loss, dx)``, and a
two-layer network (``fprop``/``bprop``/``update``) that may import their own layers.
Each assignment is one student file, ``NAME.py`` or ``NAME.ipynb``; the reference
solutions are the ``NAME.py`` files beside this one, and ``support/gradient_check.py``
is copied into every student's folder for their own finite-difference checks.

Rubric: the default everywhere (forward 2, backward 6 split evenly over the gradients,
update 2 for the network): 8 points per layer or loss, 10 for the network.

Hidden sizes keep the batch size apart from every width, so a transposed gradient is a
shape error rather than a lucky pass.
"""

import math

from gradcheck.assignments import Example, Fixed, Input, Labels, Layer, Loss, Network, Rubric

TITLE = "CS231n-style layers"

ASSIGNMENTS = (
    Layer(
        name="affine",
        forward="affine_forward", backward="affine_backward",
        inputs={"x": Input(("N", "D")), "w": Input(("D", "M")), "b": Input(("M",))},
        sizes=({"N": 4, "D": 5, "M": 3}, {"N": 7, "D": 2, "M": 6}, {"N": 3, "D": 6, "M": 5}),
        examples=(Example(
            {"x": [[1.0, 0.0, 2.0], [-1.0, 3.0, 1.0]],
             "w": [[1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 1.0, 0.0], [-1.0, 0.0, 2.0, 1.0]],
             "b": [0.5, -1.0, 0.0, 2.0]},
            source="hand-computed",
            expected={"out": [[-0.5, 1.0, 4.0, 3.0], [-1.5, 0.0, 5.0, 4.0]]}),),
        rubric=Rubric(forward=2, backward=6),
        title="Affine (fully connected) layer",
        notation=r"$\text{out} = x W + b$; $dx = d\text{out}\, W^\top$, "
                 r"$dW = x^\top d\text{out}$, $db = \sum_n d\text{out}_n$",
    ),
    Layer(
        name="relu",
        forward="relu_forward", backward="relu_backward",
        inputs={"x": Input(("N", "D"), kinks=(0.0,))},  # entries kept away from the kink
        examples=(Example({"x": [[-1.0, 2.0, 0.5], [3.0, -0.25, -2.0]]}, source="hand-computed",
                          expected={"out": [[0.0, 2.0, 0.5], [3.0, 0.0, 0.0]]}),),
        title="ReLU",
        notation=r"$\text{out} = \max(x, 0)$; $dx = d\text{out} \odot [x > 0]$",
    ),
    Layer(
        name="batchnorm",
        forward="batchnorm_forward", backward="batchnorm_backward",
        inputs={"x": Input(("N", "D")), "gamma": Input(("D",), low=0.5, high=1.5),
                "beta": Input(("D",)), "bn_param": Fixed({"mode": "train", "eps": 1e-5})},
        # N >= 3: with two rows xhat is +-1 whatever x is, so the true dx is about 1e-4
        # and a dx of zeros would pass.
        sizes=({"N": 5, "D": 3}, {"N": 8, "D": 4}, {"N": 3, "D": 7}),
        title="Batch normalization (train mode)",
        notation=r"$\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}$, "
                 r"$\text{out} = \gamma \hat x + \beta$; with $d\hat x = \gamma\, d\text{out}$, "
                 r"$dx = \frac{1}{N\sqrt{\sigma^2+\epsilon}}\left(N d\hat x"
                 r" - \sum_n d\hat x_n - \hat x \sum_n d\hat x_n \hat x_n\right)$",
    ),
    Layer(
        name="conv",
        forward="conv_forward_naive", backward="conv_backward_naive",
        inputs={"x": Input(("N", "C", "H", "W")), "w": Input(("F", "C", "HH", "WW")),
                "b": Input(("F",)), "conv_param": Fixed({"stride": 2, "pad": 1})},
        # (H + 2 pad - HH) and (W + 2 pad - WW) even for stride 2; all dimensions distinct,
        # and a 1-row filter in the last one.
        sizes=({"N": 2, "C": 3, "H": 7, "W": 8, "F": 4, "HH": 5, "WW": 6},
               {"N": 7, "C": 2, "H": 6, "W": 9, "F": 5, "HH": 4, "WW": 3},
               {"N": 4, "C": 3, "H": 7, "W": 9, "F": 2, "HH": 1, "WW": 5}),
        title="Convolution (naive, with padding and stride)",
        notation=r"$\text{out}_{nfij} = \sum_{ckl} x^{pad}_{n,c,si+k,sj+l}\, w_{fckl} + b_f$",
    ),
    Loss(
        name="softmax",
        function="softmax_loss",
        inputs={"x": Input(("N", "C")), "y": Labels(("N",), classes="C")},
        examples=(Example({"x": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "y": [0, 2]},
                          source="uniform scores: the loss is log C",
                          expected={"loss": math.log(3.0)}),
                  # Large scores: exp(1000) overflows unless each row's max is subtracted.
                  Example({"x": [[1000.0, 1001.0, 999.0], [-2.0, 998.5, 1000.0]], "y": [1, 2]},
                          source="large scores: a softmax that does not subtract the max "
                                 "overflows",
                          expected={"loss": (math.log(1 + math.exp(-1) + math.exp(-2))
                                             + math.log(1 + math.exp(-1.5) + math.exp(-1002)))
                                    / 2})),
        title="Softmax loss",
        notation=r"$L = -\frac{1}{N}\sum_n \log \mathrm{softmax}(x_n)_{y_n}$; "
                 r"$dx = (\mathrm{softmax}(x) - \mathrm{onehot}(y)) / N$",
    ),
    Network(
        name="two_layer_net",
        x=Input(("N", "D")), y=Labels(("N",), classes="C"),
        params={"W1": Input(("D", "H")), "b1": Input(("H",)),
                "W2": Input(("H", "C")), "b2": Input(("C",))},
        loss="softmax", lr=0.1,
        sizes=({"N": 5, "D": 4, "H": 6, "C": 3}, {"N": 8, "D": 3, "H": 7, "C": 4},
               {"N": 4, "D": 6, "H": 5, "C": 2}),
        title="Two-layer network: affine - relu - affine - softmax",
        notation=r"$h = xW_1 + b_1$, $a = \max(h, 0)$, $s = aW_2 + b_2$, "
                 r"$L = -\frac{1}{N}\sum_n \log \mathrm{softmax}(s_n)_{y_n}$",
    ),
)
