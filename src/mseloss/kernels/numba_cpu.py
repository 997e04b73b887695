"""Fused CPU kernels for the mean squared error, compiled with numba.

Every kernel works on flat, contiguous 1-D arrays: the op layer hands over tensors whose memory
orders agree (contiguous, or dense with identical strides) and views them as their storage.
Supported element types are float64, float32, float16 and bfloat16. numba has no half types on
the CPU, so half tensors travel as 16-bit integer arrays (float16 as ``uint16``, bfloat16 as
``int16``) and are converted with LLVM's own ``fpext``/``fptrunc`` for float16 (one instruction
with F16C) and with bit operations for bfloat16.

All arithmetic is done in float64, and the reductions accumulate in float64 over fixed blocks of
:data:`BLOCK` elements whose partial sums are added in block order. The result therefore does not
depend on the number of threads, and a float32 mean or sum is within one ulp of the exact value.

The launchers at the bottom of this file pass the tensors to the kernels by address. Once a tensor
is larger than :data:`PARALLEL_THRESHOLD` they share its blocks among
:func:`torch.get_num_threads` threads: a parallel region of PyTorch's own OpenMP runtime where it
is GNU OpenMP, else a small pool of Python threads (the kernels release the GIL).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.extending import intrinsic, overload

__all__ = [
    "BLOCK",
    "PARALLEL_THRESHOLD",
    "PRECOMPUTE_GRAD",
    "SUPPORTED_DTYPES",
    "mse_backward",
    "squared_error",
    "sse_forward",
    "upstream_is_one",
]

#: Elements per reduction block. 2**14 float32 elements of x and y (128 KiB together) stay in L2
#: while a block is summed, and a fixed block size keeps the summation order independent of the
#: number of threads.
BLOCK = 1 << 14

#: Below this many elements a call stays on the calling thread. Measured here on float32 data not
#: in cache, forward mean: at 2**17 elements one and two threads tie (100 microseconds); at 2**18
#: two threads take 86 against 207.
PARALLEL_THRESHOLD = 1 << 18

#: Upper bound on helper threads shared by all concurrent calls.
_MAX_HELPERS = max(8, 2 * (os.cpu_count() or 1))

SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

#: The reduced forward writes the gradient in the same pass when one is needed: on the CPU the
#: backward can check for free whether the upstream gradient is one and then return it untouched.
PRECOMPUTE_GRAD = True

#: Kernels release the GIL (the launcher's threads run them side by side), are cached on disk,
#: and may reassociate sums (vectorised float64 reductions; the order is still fixed per block).
_kernel = njit(nogil=True, cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")


# --------------------------------------------------------------------------------------------
# Scalar conversions for the half types (bit patterns in 16-bit integers).
# --------------------------------------------------------------------------------------------


def _float16_bits_to_float32_typer(typingctx: Any, bits: Any) -> Any:
    """Widen a float16 bit pattern held in a ``uint16`` to float32 (exact)."""
    sig = types.float32(types.uint16)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        half = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(half, ir.FloatType())

    return sig, codegen


_float16_bits_to_float32: Any = intrinsic(_float16_bits_to_float32_typer)


def _float32_to_float16_bits_typer(typingctx: Any, value: Any) -> Any:
    """Round a float32 to the nearest float16 (ties to even) and return its bit pattern."""
    sig = types.uint16(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        half = builder.fptrunc(args[0], ir.HalfType())
        return builder.bitcast(half, ir.IntType(16))

    return sig, codegen


_float32_to_float16_bits: Any = intrinsic(_float32_to_float16_bits_typer)


def _bits_to_float32_typer(typingctx: Any, bits: Any) -> Any:
    """Reinterpret a ``uint32`` bit pattern as float32."""
    sig = types.float32(types.uint32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_bits_to_float32: Any = intrinsic(_bits_to_float32_typer)


def _float32_to_bits_typer(typingctx: Any, value: Any) -> Any:
    """Reinterpret a float32 as its ``uint32`` bit pattern."""
    sig = types.uint32(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


_float32_to_bits: Any = intrinsic(_float32_to_bits_typer)


@njit(inline="always")
def _bfloat16_bits_to_float32(bits: Any) -> Any:
    """Widen a bfloat16 bit pattern held in an ``int16`` to float32 (exact)."""
    return _bits_to_float32((np.uint32(bits) & np.uint32(0xFFFF)) << np.uint32(16))


@njit(inline="always")
def _round_to_odd_float32(value: Any) -> Any:
    """float64 to float32 rounding to odd: exact values stay, inexact ones get an odd last bit.

    Rounding to odd first and to nearest-even second gives the correctly rounded result in any
    format at least two bits narrower than float32, so float16 and bfloat16 values are rounded
    once, as if directly from the float64.
    """
    # Branch-free (selects as arithmetic on 0/1 flags) so that the loops calling it vectorise.
    nearest = np.float32(value)
    widened = np.float64(nearest)
    inexact = np.uint32((widened != value) & (value == value))  # NaN counts as exact
    away = np.uint32(abs(widened) > abs(value))  # rounded away from zero: lower neighbour
    return _bits_to_float32((_float32_to_bits(nearest) - away) | inexact)


@njit(nogil=True, cache=True)
def _round_to_odd_float32_scalar(value: float) -> float:
    """:func:`_round_to_odd_float32` for one Python float (the final rounding of a loss)."""
    return float(_round_to_odd_float32(value))


@njit(inline="always")
def _float64_to_bfloat16_bits(value: Any) -> Any:
    bits = _float32_to_bits(_round_to_odd_float32(value))
    # Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then truncate.
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (bits >> np.uint32(16)) | np.uint32(0x40)
    is_nan = np.uint32((bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000))
    return np.int16(rounded + is_nan * (quiet_nan - rounded))


def _store(array: Any, index: Any, value: Any) -> None:  # pragma: no cover - replaced
    raise NotImplementedError


@overload(_store, inline="always")
def _store_from_float64(array: Any, index: Any, value: Any) -> Any:
    """Round a float64 once into the storage type (via float32 rounded to odd for halves)."""
    dtype = array.dtype
    if dtype == types.uint16:

        def store_float16(array: Any, index: Any, value: Any) -> None:
            array[index] = _float32_to_float16_bits(_round_to_odd_float32(value))

        return store_float16
    if dtype == types.int16:

        def store_bfloat16(array: Any, index: Any, value: Any) -> None:
            array[index] = _float64_to_bfloat16_bits(value)

        return store_bfloat16

    def store_native(array: Any, index: Any, value: Any) -> None:
        array[index] = value

    return store_native


def _scratch(array: Any, n: Any) -> Any:  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _widen(block: Any, scratch: Any) -> Any:  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _is_half_storage(dtype: Any) -> bool:
    return dtype in (types.uint16, types.int16)


@overload(_scratch, inline="always")
def _scratch_for(array: Any, n: Any) -> Any:
    """A float32 buffer of one block for half-type ``array`` (none for the others)."""
    if _is_half_storage(array.dtype):

        def block_buffer(array: Any, n: Any) -> Any:
            return np.empty(min(BLOCK, n), dtype=np.float32)

        return block_buffer

    def no_buffer(array: Any, n: Any) -> Any:
        return np.empty(0, dtype=np.float32)

    return no_buffer


@overload(_widen, inline="always")
def _widen_block(block: Any, scratch: Any) -> Any:
    """A half-type block converted to float32 in ``scratch`` (exact); other blocks as they are.

    Converting a whole block in a loop of its own, then computing from the cached float32 copy,
    halves the time of a half-type kernel on operands larger than the caches (measured: a 2**24
    bfloat16 forward on one thread, 19.8 ms before, 9.7 ms after).
    """
    if block.dtype == types.uint16:

        def widen_float16(block: Any, scratch: Any) -> Any:
            out = scratch[: block.size]
            for i in range(block.size):
                out[i] = _float16_bits_to_float32(block[i])
            return out

        return widen_float16
    if block.dtype == types.int16:

        def widen_bfloat16(block: Any, scratch: Any) -> Any:
            out = scratch[: block.size]
            for i in range(block.size):
                out[i] = _bfloat16_bits_to_float32(block[i])
            return out

        return widen_bfloat16

    def unchanged(block: Any, scratch: Any) -> Any:
        return block

    return unchanged


# --------------------------------------------------------------------------------------------
# Kernels. Each one handles blocks [first_block, stop_block) so that threads can share a call.
# --------------------------------------------------------------------------------------------


@_kernel
def _sse_forward_partial(
    x: Any, y: Any, out: Any, upstream: Any, scale: float, partials: Any, first: int, stop: int
) -> float:
    """Sum of squared differences of blocks ``[first, stop)``, in float64, into ``partials``.

    Returns the block sums added in order, which is the whole result when one call covers all
    blocks (the same number :func:`_sum_in_order` makes of ``partials``). ``out``, ``upstream``
    and ``scale`` are unused: all kernels share one signature so that one launcher serves them.
    """
    n = x.size
    x_buffer, y_buffer = _scratch(x, n), _scratch(y, n)
    running = 0.0
    for block in range(first, stop):
        start = block * BLOCK
        xs = _widen(x[start : min(start + BLOCK, n)], x_buffer)
        ys = _widen(y[start : min(start + BLOCK, n)], y_buffer)
        total = 0.0
        for i in range(xs.size):
            diff = np.float64(xs[i]) - np.float64(ys[i])
            total += diff * diff
        partials[block] = total
        running += total
    return running


@_kernel
def _sse_forward_with_grad_partial(
    x: Any, y: Any, out: Any, upstream: Any, scale: float, partials: Any, first: int, stop: int
) -> float:
    """As :func:`_sse_forward_partial`, also writing the gradient ``out = scale * (x - y)``."""
    n = x.size
    x_buffer, y_buffer = _scratch(x, n), _scratch(y, n)
    running = 0.0
    for block in range(first, stop):
        start = block * BLOCK
        xs = _widen(x[start : min(start + BLOCK, n)], x_buffer)
        ys = _widen(y[start : min(start + BLOCK, n)], y_buffer)
        gs = out[start : min(start + BLOCK, n)]
        total = 0.0
        for i in range(xs.size):
            diff = np.float64(xs[i]) - np.float64(ys[i])
            total += diff * diff
            _store(gs, i, scale * diff)
        partials[block] = total
        running += total
    return running


@_kernel
def _squared_error(
    x: Any, y: Any, out: Any, upstream: Any, scale: float, partials: Any, first: int, stop: int
) -> float:
    """Elementwise ``out = (x - y) ** 2``, rounded once into ``out``'s type."""
    n = x.size
    x_buffer, y_buffer = _scratch(x, n), _scratch(y, n)
    for block in range(first, stop):
        start = block * BLOCK
        xs = _widen(x[start : min(start + BLOCK, n)], x_buffer)
        ys = _widen(y[start : min(start + BLOCK, n)], y_buffer)
        os_ = out[start : min(start + BLOCK, n)]
        for i in range(xs.size):
            diff = np.float64(xs[i]) - np.float64(ys[i])
            _store(os_, i, diff * diff)
    return 0.0


@_kernel
def _mse_backward_scalar(
    x: Any, y: Any, out: Any, upstream: Any, scale: float, partials: Any, first: int, stop: int
) -> float:
    """``out = scale * (x - y)``, a scalar upstream gradient being folded into ``scale``."""
    n = x.size
    x_buffer, y_buffer = _scratch(x, n), _scratch(y, n)
    for block in range(first, stop):
        start = block * BLOCK
        xs = _widen(x[start : min(start + BLOCK, n)], x_buffer)
        ys = _widen(y[start : min(start + BLOCK, n)], y_buffer)
        gs = out[start : min(start + BLOCK, n)]
        for i in range(xs.size):
            _store(gs, i, scale * (np.float64(xs[i]) - np.float64(ys[i])))
    return 0.0


@_kernel
def _mse_backward_elementwise(
    x: Any, y: Any, out: Any, upstream: Any, scale: float, partials: Any, first: int, stop: int
) -> float:
    """``out = scale * upstream * (x - y)`` with an elementwise upstream gradient."""
    n = x.size
    x_buffer, y_buffer = _scratch(x, n), _scratch(y, n)
    upstream_buffer = _scratch(upstream, n)
    for block in range(first, stop):
        start = block * BLOCK
        xs = _widen(x[start : min(start + BLOCK, n)], x_buffer)
        ys = _widen(y[start : min(start + BLOCK, n)], y_buffer)
        us = _widen(upstream[start : min(start + BLOCK, n)], upstream_buffer)
        gs = out[start : min(start + BLOCK, n)]
        for i in range(xs.size):
            _store(gs, i, scale * np.float64(us[i]) * (np.float64(xs[i]) - np.float64(ys[i])))
    return 0.0


@njit(nogil=True, cache=True)
def _sum_in_order(partials: Any) -> float:
    """Add the block sums one after the other (no reassociation: the order is fixed)."""
    total = 0.0
    for value in partials:
        total += value
    return total


# --------------------------------------------------------------------------------------------
# Launchers: torch tensors in, numpy views to the kernels, blocks split between threads.
# --------------------------------------------------------------------------------------------

# Threads. Above PARALLEL_THRESHOLD the blocks are shared between torch.get_num_threads()
# threads. Where PyTorch runs on GNU OpenMP (Linux builds), the kernels run as a parallel region
# of PyTorch's own OpenMP runtime, on the threads PyTorch's operators use: a second pool would
# compete for the cores with those threads, which keep spinning for milliseconds after each
# PyTorch operator (measured here: a 2**24 forward took 9.9 ms instead of 6.1 ms after one).
# Elsewhere a small pool of Python threads runs them (the kernels release the GIL).


def _address_typer(typingctx: Any, address: Any) -> Any:
    """An address held in an int64 as a ``void*`` (for ``numba.carray``)."""
    sig = types.voidptr(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


_address: Any = intrinsic(_address_typer)


def _atomic_add_typer(typingctx: Any, address: Any, value: Any) -> Any:
    """Atomically add ``value`` to the int64 at ``address``; return the previous value."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        pointer = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", pointer, args[1], "monotonic")

    return sig, codegen


_atomic_add: Any = intrinsic(_atomic_add_typer)

#: Blocks a thread of the OpenMP team claims at a time (2**17 elements).
_CLAIM = 8

# Slots of the int64 argument record of a team entry point.
_COUNTER, _BLOCKS, _NUMEL, _X, _Y, _OUT, _UPSTREAM, _PARTIALS, _SCALE, _RECORD = range(10)


def _make_team_entry(kernel: Any, storage: Any) -> Any:
    """A C entry point ``void(void*)`` running ``kernel`` on blocks claimed from a counter."""

    @cfunc(types.void(types.voidptr), cache=True)
    def team_entry(record: Any) -> None:  # pragma: no cover - compiled
        slots = carray(record, 10, np.int64)
        scale = carray(record, 10, np.float64)[_SCALE]
        n = slots[_NUMEL]
        blocks = slots[_BLOCKS]
        x = carray(_address(slots[_X]), n, storage)
        y = carray(_address(slots[_Y]), n, storage)
        out = carray(_address(slots[_OUT]), n, storage)
        upstream = carray(_address(slots[_UPSTREAM]), n, storage)
        partials = carray(_address(slots[_PARTIALS]), blocks, np.float64)
        while True:
            first = _atomic_add(slots[_RECORD], _CLAIM)
            if first >= blocks:
                break
            kernel(x, y, out, upstream, scale, partials, first, min(first + _CLAIM, blocks))

    return team_entry


def _make_serial_entry(kernel: Any, storage: Any) -> Any:
    """``kernel`` over all blocks on the calling thread, the tensors passed as addresses.

    Passing addresses and sizes instead of numpy views shortens a small call by 2 microseconds
    (numba checks an integer faster than an array, and no numpy view has to be made).
    """

    @njit(nogil=True, cache=True)
    def serial_entry(
        x: int, y: int, out: int, upstream: int, scale: float, n: int, blocks: int
    ) -> float:  # pragma: no cover - compiled
        return kernel(
            carray(_address(x), n, storage),
            carray(_address(y), n, storage),
            carray(_address(out), n, storage),
            carray(_address(upstream), n, storage),
            scale,
            np.empty(blocks, dtype=np.float64),
            0,
            blocks,
        )

    return serial_entry


def _find_gomp_parallel() -> Any:
    """``GOMP_parallel`` of the OpenMP runtime PyTorch loaded, or ``None``."""
    torch_dir = os.path.dirname(torch.__file__)
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if path.startswith(torch_dir) or "torch" in path:
            function = ctypes.CDLL(path).GOMP_parallel
            function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            function.restype = None
            return function
    return None


_GOMP_PARALLEL = _find_gomp_parallel()
_team_entries: dict[tuple[Any, torch.dtype], Any] = {}
_serial_entries: dict[tuple[Any, torch.dtype], Any] = {}
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _executor() -> ThreadPoolExecutor:
    """The helper-thread pool of the fallback, created once per process.

    It is never shut down, so a call in flight cannot find it closed; its threads start on
    demand, one per concurrent task.
    """
    global _pool, _pool_pid
    pid = os.getpid()
    with _pool_lock:
        if _pool is None or _pool_pid != pid:
            _pool = ThreadPoolExecutor(max_workers=_MAX_HELPERS, thread_name_prefix="mseloss")
            _pool_pid = pid
        return _pool


_STORAGE_VIEW = {torch.float16: torch.uint16, torch.bfloat16: torch.int16}
_STORAGE_NUMPY = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.float16: np.uint16,
    torch.bfloat16: np.int16,
}


def _as_array(tensor: torch.Tensor) -> np.ndarray:
    """The flat storage of a dense tensor as a numpy array the kernels understand."""
    storage_dtype = _STORAGE_VIEW.get(tensor.dtype)
    if storage_dtype is not None:
        tensor = tensor.view(storage_dtype)
    if tensor.is_contiguous():
        array = tensor.numpy()
        return array if array.ndim == 1 else array.reshape(-1)
    return tensor.as_strided((tensor.numel(),), (1,)).numpy()


def _entry(cache: dict[Any, Any], make: Callable[..., Any], kernel: Any, dtype: torch.dtype) -> Any:
    """The compiled entry point ``make(kernel, storage)`` for ``dtype``, made once."""
    entry = cache.get((kernel, dtype))
    if entry is None:
        entry = cache.setdefault((kernel, dtype), make(kernel, _STORAGE_NUMPY[dtype]))
    return entry


def _launch(
    kernel: Callable[..., float],
    x: torch.Tensor,
    y: torch.Tensor,
    out: torch.Tensor | None = None,
    upstream: torch.Tensor | None = None,
    scale: float = 0.0,
) -> float:
    """Run ``kernel`` over all blocks of ``x`` (tensors of one dtype and layout).

    Returns the sum of the blocks' results, added in block order whatever the thread count.
    """
    numel = x.numel()
    blocks = -(-numel // BLOCK)
    threads = min(torch.get_num_threads(), blocks) if numel >= PARALLEL_THRESHOLD else 1
    if threads <= 1:
        serial = _entry(_serial_entries, _make_serial_entry, kernel, x.dtype)
        return float(
            serial(
                x.data_ptr(),
                y.data_ptr(),
                x.data_ptr() if out is None else out.data_ptr(),
                x.data_ptr() if upstream is None else upstream.data_ptr(),
                scale,
                numel,
                blocks,
            )
        )
    partials = np.empty(blocks, dtype=np.float64)
    if _GOMP_PARALLEL is not None:
        entry = _entry(_team_entries, _make_team_entry, kernel, x.dtype)
        record = np.zeros(10, dtype=np.int64)
        record[_BLOCKS] = blocks
        record[_NUMEL] = numel
        record[_X] = x.data_ptr()
        record[_Y] = y.data_ptr()
        record[_OUT] = (out if out is not None else x).data_ptr()
        record[_UPSTREAM] = (upstream if upstream is not None else x).data_ptr()
        record[_PARTIALS] = partials.ctypes.data
        record.view(np.float64)[_SCALE] = scale
        record[_RECORD] = record.ctypes.data + 8 * _COUNTER
        _GOMP_PARALLEL(entry.address, record.ctypes.data, threads, 0)
        return float(_sum_in_order(partials))
    xa = _as_array(x)
    args: tuple[Any, ...] = (
        xa,
        _as_array(y),
        xa if out is None else _as_array(out),
        xa if upstream is None else _as_array(upstream),
        scale,
        partials,
    )
    bounds = [blocks * t // threads for t in range(threads + 1)]
    pool = _executor()
    futures = [pool.submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    kernel(*args, bounds[0], bounds[1])
    for future in futures:
        future.result()
    return float(_sum_in_order(partials))


def sse_forward(
    x: torch.Tensor, y: torch.Tensor, scale: float, grad: torch.Tensor | None
) -> torch.Tensor:
    """Return ``scale * sum((x - y) ** 2)`` as a 0-d tensor of ``x``'s dtype.

    Args:
        x: Input, dense, same dtype and strides as ``y``.
        y: Target.
        scale: ``1 / N`` for a mean, ``1`` for a sum.
        grad: If given, receives ``2 * scale * (x - y)`` in the same pass.

    Returns:
        The reduced loss, rounded once from the float64 sum.
    """
    if grad is None:
        total = _launch(_sse_forward_partial, x, y) * scale
    else:
        total = _launch(_sse_forward_with_grad_partial, x, y, grad, None, 2.0 * scale) * scale
    if x.dtype in _STORAGE_VIEW:  # torch rounds a Python float to a half type via float32
        total = _round_to_odd_float32_scalar(total)
    return torch.scalar_tensor(total, dtype=x.dtype)


def squared_error(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
    """Write ``(x - y) ** 2`` into ``out`` (same dtype and strides as ``x``)."""
    _launch(_squared_error, x, y, out)


def upstream_is_one(upstream: torch.Tensor) -> bool:
    """Whether a 0-d upstream gradient is exactly one (a cheap read on the CPU)."""
    return bool(upstream.item() == 1.0)


def mse_backward(
    x: torch.Tensor,
    y: torch.Tensor,
    upstream: torch.Tensor,
    scale: float,
    grad: torch.Tensor,
) -> None:
    """Write ``2 * scale * upstream * (x - y)`` into ``grad``.

    Args:
        x: Input, dense, same dtype and strides as ``y`` and ``grad``.
        y: Target.
        upstream: The upstream gradient: 0-d, or a tensor laid out as ``x``.
        scale: ``1 / N`` for a mean, ``1`` otherwise.
        grad: Output buffer.
    """
    if upstream.dim():
        _launch(_mse_backward_elementwise, x, y, grad, upstream, 2.0 * scale)
    else:
        _launch(_mse_backward_scalar, x, y, grad, None, 2.0 * scale * upstream.item())
