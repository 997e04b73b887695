"""Fused GPU kernels for the mean squared error, written in Triton.

The functions mirror :mod:`mseloss.kernels.numba_cpu` on CUDA tensors (and on CPU tensors under
``TRITON_INTERPRET=1``, Triton's interpreter). Every kernel walks flat, dense storage: the op
layer hands over tensors whose memory orders agree, and offsets are 64-bit so that tensors of more
than ``2**31`` elements work. Supported element types are float64, float32, float16 and bfloat16.

Precision. The half types are computed in float32 and rounded once into their type. The reduction
of a float32 input is computed in float64 (the difference and the square of two float32 values are
then exact), which costs nothing measurable in a kernel bound by memory bandwidth; float64 stays in
float64. The elementwise kernels compute float32 in float32, as PyTorch does.

Reproducibility. The reduced forward is two-staged and uses no atomics: each program of
:func:`_sse_forward_partial_kernel` sums a fixed range of elements into one float64 partial sum,
and :func:`_sse_finish_kernel` adds the partial sums in a fixed order in a single program, then
writes ``scale * total`` rounded once into the 0-d result. How the elements are split depends only
on their number, not on the number of SMs or on scheduling, so the result is bitwise identical
from run to run.

No host synchronisation. The upstream gradient of a reduced loss is a 0-d tensor in device memory;
:func:`_mse_backward_kernel` reads it through its pointer. That is also why :data:`PRECOMPUTE_GRAD`
is false here: the CPU backend returns a gradient precomputed by the forward when the upstream
gradient is exactly one, a test that would cost a device-to-host copy and a stream synchronisation
on the GPU, so the backward recomputes ``2 * scale * upstream * (x - y)`` in one pass instead.
"""

# Triton's convention: compile-time (``tl.constexpr``) kernel parameters are upper case.
# ruff: noqa: N803

from __future__ import annotations

import contextlib
from typing import Any

import torch
import triton
import triton.language as tl

__all__ = [
    "ELEMENTWISE_BLOCK",
    "FINISH_BLOCK",
    "MAX_PARTIALS",
    "PRECOMPUTE_GRAD",
    "SUPPORTED_DTYPES",
    "TILE",
    "mse_backward",
    "squared_error",
    "sse_forward",
    "upstream_is_one",
]

SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

#: The backward recomputes the gradient instead of scaling one written by the forward: deciding
#: whether the upstream gradient is one would need a host synchronisation (see the module notes).
PRECOMPUTE_GRAD = False

#: Elements one program of the elementwise kernels handles: 4096 over 8 warps is 16 elements a
#: thread, four 16-byte loads per operand for float32, enough memory traffic in flight per program
#: to stream at full bandwidth, with at most ``2**19`` programs for ``2**31`` elements.
ELEMENTWISE_BLOCK = 4096
_ELEMENTWISE_WARPS = 8

#: Elements the reduction loads per step of its loop (same reasoning as ELEMENTWISE_BLOCK).
TILE = 4096
_REDUCE_WARPS = 8

#: Upper bound on the number of programs (and partial sums) of a reduction. Each program sums a
#: whole number of tiles, a power of two chosen from the number of elements only, so the split,
#: and with it the result, does not depend on the number of SMs. 1024 programs give each of an
#: H200's 132 SMs several at a time (registers allow three to six), plenty of loads in flight to
#: stream at full bandwidth, and the finishing kernel reads 1024 partials in one load.
MAX_PARTIALS = 1024

#: Partial sums the finishing kernel adds per step (one step for at most MAX_PARTIALS of them).
FINISH_BLOCK = MAX_PARTIALS
_FINISH_WARPS = 4

#: Triton type the reduction computes in, per input dtype: float64 for float32 (exact differences
#: and squares, free in a bandwidth-bound kernel), float32 for the half types.
_REDUCE_DTYPE: dict[torch.dtype, Any] = {
    torch.float64: tl.float64,
    torch.float32: tl.float64,
    torch.float16: tl.float32,
    torch.bfloat16: tl.float32,
}

#: Triton type the elementwise kernels compute in: float64 for float64, float32 otherwise.
_ELEMENTWISE_DTYPE: dict[torch.dtype, Any] = {
    torch.float64: tl.float64,
    torch.float32: tl.float32,
    torch.float16: tl.float32,
    torch.bfloat16: tl.float32,
}

_HALF_DTYPES = (torch.float16, torch.bfloat16)

#: Let the compiler contract a multiply and an add into one FMA (the partial sums get more
#: accurate). Passed explicitly because Triton 3.9 warns that its default will change.
_FP_FUSION = True


# --------------------------------------------------------------------------------------------
# Kernels. Full blocks load and store without a mask, so the accesses vectorise whatever the
# number of elements (a mask whose alignment Triton cannot prove splits them into scalar ones);
# only the last, partial block of a tensor is masked.
#
# Parameters are Triton values, and Triton reads their annotations (``tl.int64``, ``tl.float64``
# and ``tl.constexpr`` set argument types), so the untyped ones stay untyped for mypy.
# --------------------------------------------------------------------------------------------


@triton.jit
def _load_difference(  # type: ignore[no-untyped-def]
    x_ptr, y_ptr, offsets, stop, MASKED: tl.constexpr, COMPUTE: tl.constexpr
):
    """``x - y`` at ``offsets`` in the type ``COMPUTE``; if ``MASKED``, zero from ``stop`` on."""
    if MASKED:
        mask = offsets < stop
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
        y = tl.load(y_ptr + offsets, mask=mask, other=0.0)
    else:
        x = tl.load(x_ptr + offsets)
        y = tl.load(y_ptr + offsets)
    return x.to(COMPUTE) - y.to(COMPUTE)


@triton.jit
def _store_rounded(ptr, offsets, value, stop, MASKED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Round ``value`` once into ``ptr``'s type and store it; if ``MASKED``, only below ``stop``."""
    if MASKED:
        tl.store(ptr + offsets, value.to(ptr.dtype.element_ty), mask=offsets < stop)
    else:
        tl.store(ptr + offsets, value.to(ptr.dtype.element_ty))


@triton.jit
def _sse_tile(  # type: ignore[no-untyped-def]
    x_ptr,
    y_ptr,
    grad_ptr,
    grad_scale,
    offsets,
    stop,
    WRITE_GRAD: tl.constexpr,
    MASKED: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Squared differences of one tile; also stores ``grad_scale * (x - y)`` if ``WRITE_GRAD``."""
    diff = _load_difference(x_ptr, y_ptr, offsets, stop, MASKED, COMPUTE)
    if WRITE_GRAD:
        # tl.full rounds the float64 argument once, also under the interpreter (a Python float).
        grad = tl.full((), grad_scale, COMPUTE) * diff
        _store_rounded(grad_ptr, offsets, grad, stop, MASKED)
    return diff * diff


@triton.jit
def _sse_program(  # type: ignore[no-untyped-def]
    x_ptr,
    y_ptr,
    grad_ptr,
    grad_scale,
    partials_ptr,
    n,
    program_elements,
    WRITE_GRAD: tl.constexpr,
    TILE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Body of the partial-sum kernels: this program's range, full tiles first, then the tail."""
    pid = tl.program_id(0)
    start = pid.to(tl.int64) * program_elements
    stop = tl.minimum(start + program_elements, n)
    full_stop = start + (stop - start) // TILE * TILE
    acc = tl.zeros((TILE,), dtype=COMPUTE)
    for tile_start in range(start, full_stop, TILE):
        offsets = tile_start + tl.arange(0, TILE)
        acc += _sse_tile(
            x_ptr, y_ptr, grad_ptr, grad_scale, offsets, stop, WRITE_GRAD, False, COMPUTE
        )
    if full_stop < stop:
        offsets = full_stop + tl.arange(0, TILE)
        acc += _sse_tile(
            x_ptr, y_ptr, grad_ptr, grad_scale, offsets, stop, WRITE_GRAD, True, COMPUTE
        )
    tl.store(partials_ptr + pid, tl.sum(acc, axis=0).to(tl.float64))


@triton.jit
def _sse_forward_partial_kernel(  # type: ignore[no-untyped-def]
    x_ptr,
    y_ptr,
    partials_ptr,
    n: tl.int64,
    program_elements: tl.int64,
    TILE: tl.constexpr,
    COMPUTE: tl.constexpr,
) -> None:
    """Sum of squared differences of this program's ``program_elements`` elements, as float64."""
    _sse_program(x_ptr, y_ptr, x_ptr, 0.0, partials_ptr, n, program_elements, False, TILE, COMPUTE)


@triton.jit
def _sse_forward_with_grad_partial_kernel(  # type: ignore[no-untyped-def]
    x_ptr,
    y_ptr,
    grad_ptr,
    grad_scale: tl.float64,
    partials_ptr,
    n: tl.int64,
    program_elements: tl.int64,
    TILE: tl.constexpr,
    COMPUTE: tl.constexpr,
) -> None:
    """As :func:`_sse_forward_partial_kernel`, also writing ``grad = grad_scale * (x - y)``."""
    _sse_program(
        x_ptr, y_ptr, grad_ptr, grad_scale, partials_ptr, n, program_elements, True, TILE, COMPUTE
    )


@triton.jit
def _round_to_odd_float32(value):  # type: ignore[no-untyped-def]
    """float64 to float32 rounding to odd: exact values stay, inexact ones get an odd last bit.

    Rounding to odd first and to nearest-even second gives the correctly rounded result in any
    format at least two bits narrower than float32, so a float16 or bfloat16 loss is rounded once,
    as if directly from the float64 sum (as in the CPU backend).
    """
    nearest = value.to(tl.float32)
    widened = nearest.to(tl.float64)
    bits = nearest.to(tl.int32, bitcast=True)
    bits = tl.where(tl.abs(widened) > tl.abs(value), bits - 1, bits)  # to the lower neighbour
    bits = tl.where((widened != value) & (value == value), bits | 1, bits)  # NaN counts as exact
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _sse_finish_kernel(  # type: ignore[no-untyped-def]
    partials_ptr,
    out_ptr,
    n_partials: tl.int64,
    scale: tl.float64,
    FINISH_BLOCK: tl.constexpr,
    HALF_OUTPUT: tl.constexpr,
) -> None:
    """``out = scale * sum(partials)`` in float64, in a fixed order, rounded once into ``out``.

    A half-type ``out`` is reached through float32 rounded to odd (Triton converts to the half
    types from float32 only), which keeps the two roundings equal to one.
    """
    acc = tl.zeros((FINISH_BLOCK,), dtype=tl.float64)
    for block_start in range(0, n_partials, FINISH_BLOCK):
        offsets = block_start + tl.arange(0, FINISH_BLOCK)
        acc += tl.load(partials_ptr + offsets, mask=offsets < n_partials, other=0.0)
    total = tl.sum(acc, axis=0) * scale
    if HALF_OUTPUT:
        tl.store(out_ptr, _round_to_odd_float32(total).to(out_ptr.dtype.element_ty))
    else:
        tl.store(out_ptr, total.to(out_ptr.dtype.element_ty))


@triton.jit
def _squared_error_block(  # type: ignore[no-untyped-def]
    x_ptr, y_ptr, out_ptr, offsets, n, MASKED: tl.constexpr, COMPUTE: tl.constexpr
):
    diff = _load_difference(x_ptr, y_ptr, offsets, n, MASKED, COMPUTE)
    _store_rounded(out_ptr, offsets, diff * diff, n, MASKED)


@triton.jit
def _squared_error_kernel(  # type: ignore[no-untyped-def]
    x_ptr, y_ptr, out_ptr, n: tl.int64, BLOCK: tl.constexpr, COMPUTE: tl.constexpr
) -> None:
    """Elementwise ``out = (x - y) ** 2``, rounded once into ``out``'s type."""
    block_start = tl.program_id(0).to(tl.int64) * BLOCK
    offsets = block_start + tl.arange(0, BLOCK)
    if block_start + BLOCK <= n:
        _squared_error_block(x_ptr, y_ptr, out_ptr, offsets, n, False, COMPUTE)
    else:
        _squared_error_block(x_ptr, y_ptr, out_ptr, offsets, n, True, COMPUTE)


@triton.jit
def _mse_backward_block(  # type: ignore[no-untyped-def]
    x_ptr,
    y_ptr,
    upstream_ptr,
    grad_ptr,
    grad_scale,
    offsets,
    n,
    SCALAR_UPSTREAM: tl.constexpr,
    MASKED: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    diff = _load_difference(x_ptr, y_ptr, offsets, n, MASKED, COMPUTE)
    if SCALAR_UPSTREAM:
        upstream = tl.load(upstream_ptr).to(COMPUTE)  # read on the device: no host sync
    elif MASKED:
        upstream = tl.load(upstream_ptr + offsets, mask=offsets < n, other=0.0).to(COMPUTE)
    else:
        upstream = tl.load(upstream_ptr + offsets).to(COMPUTE)
    grad = tl.full((), grad_scale, COMPUTE) * upstream * diff
    _store_rounded(grad_ptr, offsets, grad, n, MASKED)


@triton.jit
def _mse_backward_kernel(  # type: ignore[no-untyped-def]
    x_ptr,
    y_ptr,
    upstream_ptr,
    grad_ptr,
    grad_scale: tl.float64,
    n: tl.int64,
    SCALAR_UPSTREAM: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
) -> None:
    """``grad = grad_scale * upstream * (x - y)``, the upstream gradient 0-d or elementwise."""
    block_start = tl.program_id(0).to(tl.int64) * BLOCK
    offsets = block_start + tl.arange(0, BLOCK)
    if block_start + BLOCK <= n:
        _mse_backward_block(
            x_ptr,
            y_ptr,
            upstream_ptr,
            grad_ptr,
            grad_scale,
            offsets,
            n,
            SCALAR_UPSTREAM,
            False,
            COMPUTE,
        )
    else:
        _mse_backward_block(
            x_ptr,
            y_ptr,
            upstream_ptr,
            grad_ptr,
            grad_scale,
            offsets,
            n,
            SCALAR_UPSTREAM,
            True,
            COMPUTE,
        )


# --------------------------------------------------------------------------------------------
# Launchers: grids, block sizes and buffers, on the tensors' own device.
# --------------------------------------------------------------------------------------------


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """The storage of a dense tensor as a flat view (any memory order)."""
    if tensor.is_contiguous():
        return tensor.reshape(-1)
    return tensor.as_strided((tensor.numel(),), (1,))


def _on_device(tensor: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Make ``tensor``'s GPU the current one: Triton launches on the current device."""
    if tensor.is_cuda:
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def _elementwise_grid(numel: int) -> tuple[int]:
    return (triton.cdiv(numel, ELEMENTWISE_BLOCK),)


def _program_elements(numel: int) -> int:
    """Elements per reduction program: the fewest tiles (a power of two) for MAX_PARTIALS."""
    tiles = triton.cdiv(numel, TILE)
    return TILE * triton.next_power_of_2(triton.cdiv(tiles, MAX_PARTIALS))


def sse_forward(
    x: torch.Tensor, y: torch.Tensor, scale: float, grad: torch.Tensor | None
) -> torch.Tensor:
    """Return ``scale * sum((x - y) ** 2)`` as a 0-d tensor of ``x``'s dtype on its device.

    Args:
        x: Input, dense, same dtype and strides as ``y``.
        y: Target.
        scale: ``1 / N`` for a mean, ``1`` for a sum.
        grad: If given (laid out as ``x``), receives ``2 * scale * (x - y)`` in the same pass.

    Returns:
        The reduced loss, rounded once from the float64 sum.
    """
    numel = x.numel()
    out = torch.empty((), dtype=x.dtype, device=x.device)
    program_elements = _program_elements(numel)
    n_partials = triton.cdiv(numel, program_elements)
    partials = torch.empty(n_partials, dtype=torch.float64, device=x.device)
    compute = _REDUCE_DTYPE[x.dtype]
    with _on_device(x):
        if n_partials:
            if grad is None:
                _sse_forward_partial_kernel[(n_partials,)](
                    _flat(x),
                    _flat(y),
                    partials,
                    numel,
                    program_elements,
                    TILE=TILE,
                    COMPUTE=compute,
                    num_warps=_REDUCE_WARPS,
                    enable_fp_fusion=_FP_FUSION,
                )
            else:
                _sse_forward_with_grad_partial_kernel[(n_partials,)](
                    _flat(x),
                    _flat(y),
                    _flat(grad),
                    2.0 * scale,
                    partials,
                    numel,
                    program_elements,
                    TILE=TILE,
                    COMPUTE=compute,
                    num_warps=_REDUCE_WARPS,
                    enable_fp_fusion=_FP_FUSION,
                )
        _sse_finish_kernel[(1,)](
            partials,
            out,
            n_partials,
            scale,
            FINISH_BLOCK=FINISH_BLOCK,
            HALF_OUTPUT=x.dtype in _HALF_DTYPES,
            num_warps=_FINISH_WARPS,
            enable_fp_fusion=_FP_FUSION,
        )
    return out


def squared_error(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
    """Write ``(x - y) ** 2`` into ``out`` (same dtype and strides as ``x``)."""
    numel = x.numel()
    if not numel:
        return
    with _on_device(x):
        _squared_error_kernel[_elementwise_grid(numel)](
            _flat(x),
            _flat(y),
            _flat(out),
            numel,
            BLOCK=ELEMENTWISE_BLOCK,
            COMPUTE=_ELEMENTWISE_DTYPE[x.dtype],
            num_warps=_ELEMENTWISE_WARPS,
            enable_fp_fusion=_FP_FUSION,
        )


def upstream_is_one(upstream: torch.Tensor) -> bool:
    """Always ``False``: finding out would synchronise with the GPU (unused: no precomputing)."""
    return False


def mse_backward(
    x: torch.Tensor,
    y: torch.Tensor,
    upstream: torch.Tensor,
    scale: float,
    grad: torch.Tensor,
) -> None:
    """Write ``2 * scale * upstream * (x - y)`` into ``grad`` in one pass.

    Args:
        x: Input, dense, same dtype and strides as ``y`` and ``grad``.
        y: Target.
        upstream: The upstream gradient: 0-d (read by the kernel from device memory, never
            copied to the host), or a tensor laid out as ``x``.
        scale: ``1 / N`` for a mean, ``1`` otherwise.
        grad: Output buffer.
    """
    numel = x.numel()
    if not numel:
        return
    scalar = upstream.dim() == 0
    with _on_device(x):
        _mse_backward_kernel[_elementwise_grid(numel)](
            _flat(x),
            _flat(y),
            upstream if scalar else _flat(upstream),
            _flat(grad),
            2.0 * scale,
            numel,
            SCALAR_UPSTREAM=scalar,
            BLOCK=ELEMENTWISE_BLOCK,
            COMPUTE=_ELEMENTWISE_DTYPE[x.dtype],
            num_warps=_ELEMENTWISE_WARPS,
            enable_fp_fusion=_FP_FUSION,
        )
