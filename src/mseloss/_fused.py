"""The autograd layer between :mod:`mseloss.functional` and the kernels.

:func:`mse` takes validated arguments and decides between the fused kernels (through
:class:`FusedMSELoss`) and the plain-PyTorch reference. When a gradient is wanted from a reduced
loss, the forward kernel writes it in the same pass as the sum; the backward then hands that buffer
to autograd as it is when the upstream gradient is exactly one, scales it in place otherwise
(float32 and float64; the half types recompute it, to keep one rounding), and negates it for the
target.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch.autograd import forward_ad

from mseloss import _library, distributed, reference
from mseloss._backend import current_backend, kernels_for
from mseloss._layout import laid_out_like, same_layout
from mseloss._reduction import Reduction

__all__ = ["FusedMSELoss", "mse", "result_dtype"]

_HALF_TYPES = frozenset((torch.float16, torch.bfloat16))
_NO_TORCH_FUNCTION = torch._C._disabled_torch_function_impl
_AUTOCAST_DEVICES = frozenset(("cpu", "cuda", "xpu", "mps", "hpu"))
_KERNEL_DTYPES = frozenset((torch.float64, torch.float32, torch.float16, torch.bfloat16))
_EXACT_IN_PLACE_SCALING = frozenset((torch.float64, torch.float32))


def result_dtype(input: torch.Tensor, target: torch.Tensor) -> torch.dtype:
    """The promoted dtype of the loss, with PyTorch's error for types it has no kernel for.

    Raises:
        NotImplementedError: For integer, boolean, complex and float8 results (PyTorch's
            message).
    """
    dtype = reference.result_dtype(input, target)
    if dtype not in _KERNEL_DTYPES:
        name = torch.empty((), dtype=dtype, device="meta").type().rpartition(".")[2]
        name = name.removesuffix("Tensor")
        raise NotImplementedError(f"\"mse_{input.device.type}\" not implemented for '{name}'")
    return dtype


def _autocasting(tensor: torch.Tensor) -> bool:
    """Whether autocast is on for ``tensor``'s device."""
    if tensor.is_cpu:
        return torch.is_autocast_enabled("cpu")
    device = tensor.device.type
    return device in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device)


def _compile_time_backend() -> str:
    """The backend in force, read once while torch.compile traces (a constant of the graph)."""
    return current_backend()


# What ``torch.compiler.assume_constant_result`` does, without importing torch._dynamo (a second
# and Triton) when mseloss is imported; tests/test_integration.py checks the two agree.
_compile_time_backend._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _transforms_active() -> bool:
    """True inside torch.func transforms, forward-mode AD or a torch.jit trace.

    The reference path serves those.
    """
    return (
        torch._C._are_functorch_transforms_active()
        or forward_ad._current_level >= 0
        or torch._C._get_tracing_state() is not None
    )


def _is_batched(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is vmapped (torch.func.vmap, or ``is_grads_batched=True`` backward).

    The older batching of ``is_grads_batched`` has a dispatch key Python cannot name; such a
    tensor is recognised by having no backend key of its own.
    """
    if torch._C._functorch.is_batchedtensor(tensor):
        return True
    keys = torch._C._dispatch_keys(tensor)
    return not (keys.has(torch._C.DispatchKey.CPU) or keys.has(torch._C.DispatchKey.CUDA))


def _is_plain(tensor: torch.Tensor) -> bool:
    """A ``torch.Tensor``, or a subclass that changes no dispatch (``nn.Parameter``, say)."""
    kind = type(tensor)
    return kind is torch.Tensor or (
        kind.__torch_function__ is _NO_TORCH_FUNCTION
        and kind.__torch_dispatch__ is torch.Tensor.__torch_dispatch__
    )


def _operands(
    input: torch.Tensor, target: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both operands in the loss dtype (copies only where a cast is needed)."""
    x = input if input.dtype == dtype else input.to(dtype)
    y = target if target.dtype == dtype else target.to(dtype)
    return x, y


class FusedMSELoss(torch.autograd.Function):
    """Autograd wrapper around a kernel module of :mod:`mseloss.kernels`.

    Operands of different shapes go through the chunked broadcasting path of
    :mod:`mseloss.reference` instead of the kernels; ``kernels`` may then be ``None``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        target: torch.Tensor,
        plan: tuple[Reduction, torch.dtype, ModuleType | None],
    ) -> torch.Tensor:
        reduction, dtype, kernels = plan
        ctx.plan = plan
        ctx.grad = None
        ctx.save_for_backward(input, target)
        x, y = _operands(input, target, dtype)
        if x.shape != y.shape:
            return reference.broadcast_mse_forward(x, y, reduction)
        assert kernels is not None
        x, y = same_layout(x, y)
        numel = x.numel()
        if reduction == Reduction.NONE:
            out = torch.empty_like(x)
            if numel:
                kernels.squared_error(x, y, out)
            return out
        if numel == 0:
            empty = torch.nan if reduction == Reduction.MEAN else 0.0
            return torch.full((), empty, dtype=dtype, device=x.device)
        scale = 1.0 / numel if reduction == Reduction.MEAN else 1.0
        grad = None
        if (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]) and kernels.PRECOMPUTE_GRAD:
            grad = torch.empty_like(x)
        loss = kernels.sse_forward(x, y, scale, grad)
        ctx.grad = grad
        return loss

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[Any, ...]:
        input, target = ctx.saved_tensors
        needs = ctx.needs_input_grad
        reduction, dtype, kernels = ctx.plan
        grad: torch.Tensor | None = ctx.grad
        ctx.grad = None  # the precomputed buffer is handed over once; a retained graph recomputes
        if torch.is_grad_enabled() or _is_batched(upstream):
            # create_graph=True, or a vmapped upstream (is_grads_batched): plain tensor ops
            differentiable = reference.mse_backward(input, target, upstream, reduction)
            return (
                differentiable[0] if needs[0] else None,
                differentiable[1] if needs[1] else None,
                None,
            )
        if grad is not None:
            assert kernels is not None
            if kernels.upstream_is_one(upstream):
                pass
            elif dtype in _EXACT_IN_PLACE_SCALING:
                grad.mul_(upstream)
            else:  # a half type: scaling the rounded buffer would round twice
                grad = None
        if grad is None:
            x, y = _operands(input, target, dtype)
            if x.shape != y.shape:
                gx, gy = reference.broadcast_mse_backward(x, y, upstream, reduction, needs[:2])
                return gx, gy, None
            assert kernels is not None
            x, y = same_layout(x, y)
            grad = torch.empty_like(x)
            if x.numel():
                if reduction == Reduction.NONE:
                    scalar = all(s == 0 for s in upstream.stride())
                    g = upstream.reshape(-1)[0] if scalar else laid_out_like(x, upstream)
                    kernels.mse_backward(x, y, g, 1.0, grad)
                else:
                    scale = 1.0 / x.numel() if reduction == Reduction.MEAN else 1.0
                    kernels.mse_backward(x, y, upstream, scale, grad)
        grad_input = grad if needs[0] else None
        grad_target = None
        if needs[1]:
            grad_target = torch.neg(grad) if needs[0] else grad.neg_()
        if grad_input is not None and grad_input.dtype != input.dtype:
            grad_input = grad_input.to(input.dtype)
        if grad_target is not None and grad_target.dtype != target.dtype:
            grad_target = grad_target.to(target.dtype)
        return grad_input, grad_target, None


#: ``FusedMSELoss.apply`` without the Python-level wrapper of ``torch.autograd.Function.apply``:
#: :func:`mse` only calls it outside torch.func transforms, where that wrapper merely checks the
#: arguments for functorch tensors, and the call is 1.5 microseconds shorter.
_apply = super(torch.autograd.Function, FusedMSELoss).apply


def mse(input: torch.Tensor, target: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """The unweighted loss through the best available path.

    Args:
        input: Predictions (a tensor).
        target: Targets, broadcastable with ``input``.
        reduction: A parsed reduction.

    Returns:
        The loss; differentiable with respect to both operands.
    """
    same = input.dtype == target.dtype and input.dtype in _KERNEL_DTYPES
    dtype = input.dtype if same else result_dtype(input, target)
    if dtype in _HALF_TYPES and _autocasting(input):
        # Autocast runs mse_loss in float32, as PyTorch's autocast op lists do.
        input, target, dtype = input.float(), target.float(), torch.float32
    if torch.compiler.is_compiling():
        # Inductor fuses the reference math into one pass forward and one backward, measured
        # faster than calling the kernels as an opaque operator; a forced kernel backend still
        # gets its kernels, through the custom operators.
        kernel_forced = _compile_time_backend() in ("numba", "triton")
        if kernel_forced and dtype in _KERNEL_DTYPES and input.device == target.device:
            return _library.mse_op(input, target, reduction)
        return reference.mse_loss(input, target, reduction)
    plain = _is_plain(input) and _is_plain(target)
    if plain and dtype in _KERNEL_DTYPES and not _transforms_active():
        kernels = kernels_for(input)
        # Mismatched shapes take the chunked broadcasting path whatever the backend: it never
        # materialises the broadcast operands.
        if (kernels is not None or input.shape != target.shape) and (input.device == target.device):
            return _apply(input, target, (reduction, dtype, kernels))
    if not plain:  # DTensors: the fused kernels on each shard, a global mean (or None)
        loss = distributed.dtensor_mse(input, target, reduction)
        if loss is not None:
            return loss
    return reference.mse_loss(input, target, reduction)
