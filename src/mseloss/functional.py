"""``mse_loss``: PyTorch's functional signature and argument handling, then one dispatch."""

from __future__ import annotations

import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from mseloss import _fused, reference
from mseloss._reduction import legacy_reduction, parse_reduction, warn

__all__ = ["mse_loss"]


def _check_tensor(value: object, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"mse_loss(): argument '{name}' must be Tensor, not {type(value).__name__}")


def mse_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean squared error between ``input`` and ``target``, optionally weighted.

    A drop-in for :func:`torch.nn.functional.mse_loss` (PyTorch 2.13): the same arguments,
    warnings, errors and results, computed by fused kernels. See :class:`mseloss.MSELoss` for the
    math and the few places where the numbers deliberately differ (half types are exact-er).

    Args:
        input: Predictions, any shape.
        target: Targets; a different but broadcastable shape warns, as in PyTorch.
        size_average: Deprecated (see ``reduction``).
        reduce: Deprecated (see ``reduction``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        weight: One weight per element of ``input``; ``'mean'`` then divides by ``sum(weight)``.

    Returns:
        The loss: 0-d for ``'mean'`` and ``'sum'``, the broadcast shape for ``'none'``.

    Raises:
        TypeError: If ``input``, ``target`` or ``weight`` is not a tensor.
        ValueError: For an invalid ``reduction``, or a ``weight`` not of ``input``'s size.
        RuntimeError: If the shapes do not broadcast, or for integer-only or complex operands.

    Example:
        >>> import torch
        >>> from mseloss import mse_loss
        >>> mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
        tensor(2.5000)
    """
    if has_torch_function_variadic(input, target, weight):
        return handle_torch_function(
            mse_loss,
            (input, target, weight),
            input,
            target,
            size_average=size_average,
            reduce=reduce,
            reduction=reduction,
            weight=weight,
        )
    _check_tensor(input, "input")
    _check_tensor(target, "target")
    if weight is not None:
        _check_tensor(weight, "weight")
    mismatch = target.size() != input.size()
    if mismatch:
        warn(
            f"Using a target size ({target.size()}) that is different to the input size "
            f"({input.size()}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=2,
        )
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    if mismatch:
        torch.broadcast_tensors(input, target)  # PyTorch's error for shapes that do not broadcast
    if weight is not None:
        if weight.size() != input.size():
            raise ValueError("Weights and input must have the same size.")
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(
                f"Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', 'sum'."
            )
        return reference.weighted_mse_loss(input, target, weight, parse_reduction(reduction))
    return _fused.mse(input, target, parse_reduction(reduction))
