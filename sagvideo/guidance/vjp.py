"""One vector-Jacobian product w.r.t. a function's input, taken on a fresh leaf."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def input_vjp(fn: Callable[[Tensor], Tensor], x: Tensor, cotangent: Tensor) -> Tensor:
    """`(d fn(x) / d x)^T cotangent`, shape and dtype of x's gradient (any shape).

    `fn` runs with a graph on a detached copy of `x` (so nothing upstream of `x` is touched),
    even inside `no_grad`; its graph is released when this returns. The cotangent is cast to
    the output's dtype.
    """
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(leaf)
        (grad,) = torch.autograd.grad(out, leaf, cotangent.to(out.dtype))
    return grad
