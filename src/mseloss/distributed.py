"""The loss of distributed tensors (``torch.distributed.tensor.DTensor``) from local fused losses.

Each rank computes the loss of its own shards with the fused kernels (through
:func:`mseloss._fused.mse`), and a reduced loss is then combined by one all-reduce of the local
sums, made differentiable by DTensor itself: the local sum becomes a ``Partial("sum")`` DTensor
that is redistributed to ``Replicate()``. A mean is that global sum divided by the global number
of elements, so uneven shards weigh each element once and the gradient is ``2 (x - y) / N`` with
the global ``N`` on every rank. Half-type shards are summed from float32 copies, so that a local
sum cannot overflow float16. (PyTorch 2.13's own ``mse_loss`` of ``Shard`` DTensors averages
the ranks' local means instead, which is wrong for uneven shards.)

Handled: two DTensors of one global shape on the same 1-D device mesh with the same placement,
``Shard(d)`` or ``Replicate()``. :func:`dtensor_mse` returns ``None`` for anything else (broadcast
shapes, ``Partial`` inputs, n-D meshes, a DTensor mixed with a plain tensor), which then takes the
plain-PyTorch reference path, computed by DTensor's own operator rules.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

import torch

from mseloss import _fused
from mseloss._reduction import Reduction

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

__all__ = ["dtensor_mse"]

_HALF_TYPES = (torch.float16, torch.bfloat16)


def _contiguous_stride(shape: torch.Size) -> tuple[int, ...]:
    stride = []
    step = 1
    for size in reversed(shape):
        stride.append(step)
        step *= max(size, 1)
    return tuple(reversed(stride))


def dtensor_mse(input: torch.Tensor, target: torch.Tensor, reduction: Reduction) -> DTensor | None:
    """The loss of two DTensors from the fused loss of their local shards.

    Args:
        input: Predictions, a DTensor.
        target: Targets, a DTensor of ``input``'s global shape, mesh and placements.
        reduction: A parsed reduction.

    Returns:
        ``None`` when the operands are not a case handled here (see the module docstring).
        Otherwise a DTensor on ``input``'s mesh, differentiable with respect to both operands:
        the elementwise losses with ``input``'s placement for ``NONE``, and a replicated 0-d
        loss for ``MEAN`` and ``SUM`` (a mean is the global sum over the global element count).
    """
    if "torch.distributed.tensor" not in sys.modules:
        # No DTensor exists before that import, which costs about half a second: don't pay it.
        return None
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

    if not (isinstance(input, DTensor) and isinstance(target, DTensor)):
        return None
    mesh = input.device_mesh
    placements = input.placements
    if (
        mesh.ndim != 1
        or target.device_mesh != mesh
        or target.placements != placements
        or target.shape != input.shape
        or not isinstance(placements[0], (Shard, Replicate))
    ):
        return None
    x = input.to_local()
    y = target.to_local()
    dtype = torch.result_type(x, y)
    if x.shape != y.shape or not dtype.is_floating_point:
        return None

    if placements[0].is_replicate():  # every rank holds all of it: nothing to combine
        return DTensor.from_local(_fused.mse(x, y, reduction), mesh, placements, run_check=False)
    if reduction == Reduction.NONE:
        local = _fused.mse(x, y, reduction)
        # Pass the global shape: DTensor would otherwise assume even shards.
        stride = input.stride() if local.stride() == x.stride() else _contiguous_stride(input.shape)
        return DTensor.from_local(
            local, mesh, placements, run_check=False, shape=input.shape, stride=stride
        )

    if dtype in _HALF_TYPES:
        # A local float16 sum of squares overflows long before the mean does: sum float32 copies.
        x, y = x.float(), y.float()
    accumulate = torch.float32 if x.device.type == "mps" else torch.float64
    local_sum = _fused.mse(x, y, Reduction.SUM).to(accumulate)
    partial = DTensor.from_local(local_sum, mesh, (Partial("sum"),), run_check=False)
    # A differentiable all-reduce: its backward hands each rank the replicated upstream gradient.
    total: torch.Tensor = partial.redistribute(mesh, (Replicate(),))
    if reduction == Reduction.MEAN:
        total = total / input.numel()  # a DTensor's numel() is the global count
    return cast(DTensor, total.to(dtype))
