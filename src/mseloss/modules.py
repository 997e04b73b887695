"""``MSELoss``: :class:`torch.nn.MSELoss` computed by :func:`mseloss.mse_loss`."""

from __future__ import annotations

import torch

from mseloss.functional import mse_loss

__all__ = ["MSELoss"]


class MSELoss(torch.nn.MSELoss):
    r"""Mean squared error between each element of the input :math:`x` and target :math:`y`.

    A subclass of :class:`torch.nn.MSELoss` with the same constructor, attributes and state; only
    the computation differs. With ``reduction='none'``:

    .. math::
        \ell(x, y) = L = \{l_1,\dots,l_N\}^\top, \quad l_n = \left( x_n - y_n \right)^2,

    and otherwise :math:`\operatorname{mean}(L)` (divided by the total number of elements
    :math:`N`) or :math:`\operatorname{sum}(L)`.

    Deliberate differences from PyTorch's eager kernels, all towards the exact value: float16 and
    bfloat16 are squared and summed in float32 and rounded once (no overflow of the squares, no
    double rounding); the backward scale :math:`2/N` is never rounded to a half type; float32
    sums accumulate in float64, so a mean or sum is within one ulp of the exact value whatever
    :math:`N` and the thread count.

    Args:
        size_average: Deprecated (see ``reduction``). Default: ``True``.
        reduce: Deprecated (see ``reduction``). Default: ``True``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. The deprecated flags, when given, override
            it (with PyTorch's warning). Default: ``'mean'``.

    Shape:
        - Input: :math:`(*)`, any number of dimensions.
        - Target: :math:`(*)`, the input's shape.
        - Output: scalar, or :math:`(*)` for ``'none'``.

    Example:
        >>> import torch
        >>> from mseloss import MSELoss
        >>> loss = MSELoss()
        >>> input = torch.randn(3, 5, requires_grad=True)
        >>> target = torch.randn(3, 5)
        >>> output = loss(input, target)
        >>> output.backward()
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss (see :func:`mseloss.mse_loss`)."""
        return mse_loss(input, target, reduction=self.reduction)
