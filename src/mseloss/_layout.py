"""Memory layouts the flat kernels can walk: dense operands with identical strides."""

from __future__ import annotations

import torch

__all__ = ["laid_out_like", "same_layout"]


def _is_dense(x: torch.Tensor) -> bool:
    """Whether ``x`` covers a gap-free block of memory with each element once (any dim order)."""
    if x.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((t, s) for s, t in zip(x.shape, x.stride()) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def same_layout(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` with one dense memory order the kernels can walk flat (copies if needed).

    The order is ``x``'s when ``x`` is dense (so a ``'none'`` output keeps the input's memory
    format, as PyTorch's does), else the contiguous one.
    """
    if not _is_dense(x):
        x = x.contiguous()
    return x, laid_out_like(x, y)


def laid_out_like(x: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with ``x``'s strides (a copy only when they differ)."""
    if tensor.stride() == x.stride():
        return tensor
    return torch.empty_like(x).copy_(tensor)
