"""The fused loss as ``torch.library`` custom operators, for graphs that torch.compile captures.

``mseloss::mse_loss`` and ``mseloss::mse_loss_backward`` wrap the same kernels as the eager
autograd layer, with fake implementations (shapes and dtypes only) and autograd formulas
registered, so that a compiled graph can call them without a graph break. Their operands have
one shape and one floating dtype; :func:`mse_op` does the promotion and broadcasting around them
with ordinary (traceable) tensor operations.
"""

from __future__ import annotations

from typing import Any

import torch

from mseloss import reference
from mseloss._backend import kernels_for
from mseloss._layout import laid_out_like, same_layout
from mseloss._reduction import Reduction

__all__ = ["mse_op"]


def _scale(reduction: int, numel: int) -> float:
    return 1.0 / numel if reduction == Reduction.MEAN and numel else 1.0


@torch.library.custom_op("mseloss::mse_loss", mutates_args=())
def _mse_loss(input: torch.Tensor, target: torch.Tensor, reduction: int) -> torch.Tensor:
    """Fused loss of two tensors of one shape and dtype (reduction as :class:`Reduction`)."""
    kernels = kernels_for(input)
    if kernels is None:
        return reference.mse_loss(input, target, Reduction(reduction))
    x, y = same_layout(input, target)
    if reduction == Reduction.NONE:
        out = torch.empty_like(x)
        if x.numel():
            kernels.squared_error(x, y, out)
        return out
    if x.numel() == 0:
        empty = torch.nan if reduction == Reduction.MEAN else 0.0
        return torch.full((), empty, dtype=x.dtype, device=x.device)
    return kernels.sse_forward(x, y, _scale(reduction, x.numel()), None)


@_mse_loss.register_fake
def _mse_loss_fake(input: torch.Tensor, target: torch.Tensor, reduction: int) -> torch.Tensor:
    if reduction == Reduction.NONE:
        return torch.empty_like(same_layout(input, target)[0])  # the real output's strides
    return input.new_empty(())


@torch.library.custom_op("mseloss::mse_loss_backward", mutates_args=())
def _mse_loss_backward(
    upstream: torch.Tensor, input: torch.Tensor, target: torch.Tensor, reduction: int
) -> torch.Tensor:
    """Gradient with respect to ``input``: ``2 * scale * upstream * (input - target)``."""
    kernels = kernels_for(input)
    if kernels is None:
        grad, _ = reference.mse_backward(input, target, upstream, Reduction(reduction))
        return grad
    x, y = same_layout(input, target)
    grad = torch.empty_like(x)
    if x.numel():
        g = upstream if upstream.dim() == 0 else laid_out_like(x, upstream)
        kernels.mse_backward(x, y, g, _scale(reduction, x.numel()), grad)
    return grad


@_mse_loss_backward.register_fake
def _mse_loss_backward_fake(
    upstream: torch.Tensor, input: torch.Tensor, target: torch.Tensor, reduction: int
) -> torch.Tensor:
    return torch.empty_like(same_layout(input, target)[0])


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    input, target, reduction = inputs
    ctx.save_for_backward(input, target)
    ctx.reduction = reduction


def _backward(ctx: Any, upstream: torch.Tensor) -> tuple[Any, ...]:
    input, target = ctx.saved_tensors
    grad = _mse_loss_backward(upstream, input, target, ctx.reduction)
    return (
        grad if ctx.needs_input_grad[0] else None,
        -grad if ctx.needs_input_grad[1] else None,
        None,
    )


def _setup_backward_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    upstream, input, target, reduction = inputs
    ctx.save_for_backward(upstream, input, target)
    ctx.reduction = reduction


def _double_backward(ctx: Any, grad_grad: torch.Tensor) -> tuple[Any, ...]:
    """Derivatives of ``g = 2 * scale * upstream * (x - y)``, in plain differentiable ops."""
    upstream, input, target = ctx.saved_tensors
    scale = 2.0 * _scale(ctx.reduction, input.numel())
    weighted = grad_grad * upstream * scale
    d_upstream = (grad_grad * (input - target) * scale).sum_to_size(upstream.shape)
    return d_upstream, weighted, -weighted, None


_mse_loss.register_autograd(_backward, setup_context=_setup_context)
_mse_loss_backward.register_autograd(_double_backward, setup_context=_setup_backward_context)


def mse_op(input: torch.Tensor, target: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """The loss through the custom operators (promotion and broadcasting outside them).

    Args:
        input: Predictions.
        target: Targets, broadcastable with ``input``.
        reduction: A parsed reduction.

    Returns:
        The loss, as :func:`mseloss.mse_loss` computes it.
    """
    if input.shape != target.shape:  # the compiler fuses broadcasting without materialising it
        return reference.mse_loss(input, target, reduction)
    dtype = reference.result_dtype(input, target)
    return _mse_loss(input.to(dtype), target.to(dtype), int(reduction))
