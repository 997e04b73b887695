"""The mean squared error in plain PyTorch operations.

This is the definition every kernel is tested against and the path taken for anything the kernels
do not handle: tensor subclasses, devices without a kernel, autograd transforms, double backward
and broadcasting targets. Half types (float16, bfloat16) are computed in float32 ("opmath") and
rounded once at the end, unlike PyTorch's eager kernels.
"""

from __future__ import annotations

import torch

from mseloss._reduction import Reduction

__all__ = [
    "broadcast_mse_backward",
    "broadcast_mse_forward",
    "mse_backward",
    "mse_loss",
    "opmath_dtype",
    "result_dtype",
    "round_once",
    "weighted_mse_loss",
]

#: Largest number of broadcast elements a chunk of the broadcasting path materialises at once.
#: Half PyTorch's parallel grain size (32768), so each chunk is reduced on one thread and the
#: result does not depend on the thread count.
BROADCAST_CHUNK = 1 << 14

_HALF_TYPES = (torch.float16, torch.bfloat16)


def _category(dtype: torch.dtype) -> int:
    if dtype.is_complex:
        return 3
    if dtype.is_floating_point:
        return 2
    return 0 if dtype == torch.bool else 1


def _result_type(ndims: tuple[int, int], dtypes: tuple[torch.dtype, torch.dtype]) -> torch.dtype:
    """:func:`torch.result_type` of two operands, in a form torch.compile can trace.

    A 0-d operand decides the type only when its category (bool < integer < float < complex) is
    higher than that of the other, dimensioned, operand.
    """
    if (ndims[0] == 0) == (ndims[1] == 0):
        return torch.promote_types(*dtypes)
    dimensioned, zero_dim = dtypes if ndims[1] == 0 else dtypes[::-1]
    if _category(zero_dim) > _category(dimensioned):
        return torch.promote_types(dimensioned, zero_dim)
    return dimensioned


def result_dtype(input: torch.Tensor, target: torch.Tensor) -> torch.dtype:
    """The loss dtype: PyTorch broadcasts the operands before promoting, so no 0-d rule applies."""
    return torch.promote_types(input.dtype, target.dtype)


def round_once(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round float64 values into ``dtype`` once (PyTorch goes through float32 for half types).

    For float16 and bfloat16 the values are first rounded to float32 "to odd" (an inexact result
    gets an odd last bit), which makes the second rounding give the correctly rounded result.
    """
    if dtype not in _HALF_TYPES or value.dtype != torch.float64:
        return value.to(dtype)
    nearest = value.to(torch.float32)
    widened = nearest.double()
    inexact = (widened != value) & (value == value)
    away = widened.abs() > value.abs()
    bits = nearest.view(torch.int32) - away.int()
    return (bits | inexact.int()).view(torch.float32).to(dtype)


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The type arithmetic is done in: float32 for the half types, ``dtype`` itself otherwise."""
    return torch.float32 if dtype in _HALF_TYPES else dtype


def _reduce(losses: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == Reduction.MEAN:
        return losses.mean()
    if reduction == Reduction.SUM:
        return losses.sum()
    return losses


def mse_loss(input: torch.Tensor, target: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """``reduction((input - target) ** 2)`` with PyTorch's type promotion and broadcasting.

    Differentiable by autograd to any order.

    Args:
        input: Predictions.
        target: Targets, broadcastable with ``input``.
        reduction: How to combine the elementwise losses.

    Returns:
        The loss, in the promoted dtype of ``input`` and ``target``.
    """
    dtype = result_dtype(input, target)
    opmath = opmath_dtype(dtype)
    diff = input.to(opmath) - target.to(opmath)
    return _reduce(diff * diff, reduction).to(dtype)


def weighted_mse_loss(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, reduction: Reduction
) -> torch.Tensor:
    """PyTorch 2.13's weighted loss: ``w * (x - y) ** 2``, summed, or divided by ``sum(w)``.

    Args:
        input: Predictions.
        target: Targets, broadcastable with ``input``.
        weight: One weight per element of ``input``.
        reduction: ``MEAN`` is ``sum(w * l) / sum(w)``.

    Returns:
        The loss, in the promoted dtype of ``input``, ``target`` and ``weight``.
    """
    errors_ndim = max(input.dim(), target.dim())  # the squared errors have the broadcast shape
    dtype = _result_type((errors_ndim, weight.dim()), (result_dtype(input, target), weight.dtype))
    if not dtype.is_floating_point:  # integers: PyTorch's own formula, true division included
        losses = (input - target).pow(2) * weight
        return (
            losses.sum() / weight.sum()
            if reduction == Reduction.MEAN
            else _reduce(losses, reduction)
        )
    opmath = opmath_dtype(dtype)
    diff = input.to(opmath) - target.to(opmath)
    losses = diff * diff * weight.to(opmath)
    if reduction == Reduction.MEAN:  # a quotient of two 0-d sums: the weight's dtype counts
        return (losses.sum() / weight.to(opmath).sum()).to(torch.promote_types(dtype, weight.dtype))
    return _reduce(losses, reduction).to(dtype)


def mse_backward(
    input: torch.Tensor,
    target: torch.Tensor,
    upstream: torch.Tensor,
    reduction: Reduction,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`mse_loss` for both operands, differentiable again.

    Args:
        input: Predictions.
        target: Targets, broadcastable with ``input``.
        upstream: Gradient of the output (0-d for a reduction).
        reduction: The forward's reduction.

    Returns:
        ``(grad_input, grad_target)`` in each operand's own shape and dtype.
    """
    dtype = result_dtype(input, target)
    opmath = opmath_dtype(dtype)
    diff = input.to(opmath) - target.to(opmath)
    scale = 2.0 / max(diff.numel(), 1) if reduction == Reduction.MEAN else 2.0
    grad = diff * (upstream.to(opmath) * scale)
    return (
        grad.sum_to_size(input.shape).to(input.dtype),
        (-grad).sum_to_size(target.shape).to(target.dtype),
    )


def _chunks(shape: torch.Size) -> tuple[int, list[tuple[int, int]]]:
    """Split the broadcast ``shape`` along its longest dimension into bounded pieces."""
    if not shape:
        return 0, [(0, 1)]
    dim = max(range(len(shape)), key=lambda d: shape[d])
    length = shape[dim]
    per_slice = max(1, shape.numel() // max(length, 1))
    step = max(1, BROADCAST_CHUNK // per_slice)
    return dim, [(start, min(step, length - start)) for start in range(0, length, step)]


def _narrow(tensor: torch.Tensor, ndim: int, dim: int, start: int, length: int) -> torch.Tensor:
    """The part of ``tensor`` that meets a chunk of the broadcast shape (size-1 dims stay)."""
    lead = ndim - tensor.dim()
    if dim < lead or tensor.shape[dim - lead] == 1:
        return tensor
    return tensor.narrow(dim - lead, start, length)


def broadcast_mse_forward(
    input: torch.Tensor, target: torch.Tensor, reduction: Reduction
) -> torch.Tensor:
    """:func:`mse_loss` for operands of different shapes, never holding the whole broadcast.

    Only the output (for ``'none'``) has the broadcast size; the work is done in float64, in
    chunks of at most :data:`BROADCAST_CHUNK` elements along the longest dimension, and each
    result is rounded once into the operands' dtype, as the kernels do.

    Args:
        input: Predictions, same dtype as ``target``.
        target: Targets, broadcastable with ``input``.
        reduction: How to combine the elementwise losses.

    Returns:
        The loss in the operands' dtype.
    """
    shape = torch.broadcast_shapes(input.shape, target.shape)
    dtype = input.dtype
    dim, chunks = _chunks(shape)
    ndim = len(shape)
    if reduction == Reduction.NONE:
        # Like PyTorch's output, keep the input's memory format when it has the output's shape.
        out = torch.empty_like(input) if input.shape == shape else input.new_empty(shape)
        for start, length in chunks:
            x = _narrow(input, ndim, dim, start, length).double()
            y = _narrow(target, ndim, dim, start, length).double()
            piece = out.narrow(dim, start, length) if ndim else out
            piece.copy_(round_once((x - y).square(), dtype))
        return out
    total = torch.zeros((), dtype=torch.float64, device=input.device)
    for start, length in chunks:
        x = _narrow(input, ndim, dim, start, length).double()
        y = _narrow(target, ndim, dim, start, length).double()
        total += (x - y).square().sum()
    if reduction == Reduction.MEAN:
        total = total / shape.numel() if shape.numel() else torch.full_like(total, torch.nan)
    return round_once(total, dtype)


def broadcast_mse_backward(
    input: torch.Tensor,
    target: torch.Tensor,
    upstream: torch.Tensor,
    reduction: Reduction,
    needs: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients for :func:`broadcast_mse_forward`, in the same bounded float64 chunks.

    Args:
        input: Predictions, same dtype as ``target``.
        target: Targets, broadcastable with ``input``.
        upstream: Gradient of the output: 0-d for a reduction, the broadcast shape for ``'none'``.
        reduction: The forward's reduction.
        needs: Which of ``(input, target)`` want a gradient.

    Returns:
        ``(grad_input, grad_target)``, each summed back to its operand's shape, or ``None``.
    """
    shape = torch.broadcast_shapes(input.shape, target.shape)
    scale = 2.0 / max(shape.numel(), 1) if reduction == Reduction.MEAN else 2.0
    dim, chunks = _chunks(shape)
    ndim = len(shape)
    sums = [
        torch.zeros(op.shape, dtype=torch.float64, device=op.device) if need else None
        for op, need in zip((input, target), needs)
    ]
    upstream = upstream.double()
    for start, length in chunks:
        x = _narrow(input, ndim, dim, start, length).double()
        y = _narrow(target, ndim, dim, start, length).double()
        g = _narrow(upstream, ndim, dim, start, length)
        grad = (x - y) * (g * scale)
        for sign, total in zip((1.0, -1.0), sums):
            if total is None:
                continue
            part = _narrow(total, ndim, dim, start, length)
            part += grad.sum_to_size(part.shape) if sign > 0 else -grad.sum_to_size(part.shape)
    return (
        None if sums[0] is None else round_once(sums[0], input.dtype),
        None if sums[1] is None else round_once(sums[1], target.dtype),
    )
