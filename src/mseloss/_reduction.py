"""The ``reduction`` argument: PyTorch's validation, legacy flags and messages, in one place."""

from __future__ import annotations

import enum
import warnings
from typing import Literal

__all__ = ["Reduction", "ReductionName", "legacy_reduction", "parse_reduction", "warn"]

ReductionName = Literal["none", "mean", "sum"]


def warn(message: str, stacklevel: int) -> None:
    """``warnings.warn(message, UserWarning, stacklevel)``, also inside a torch.compile trace.

    Dynamo cannot trace ``warnings.warn``; a function marked as having a constant result (what
    ``torch.compiler.assume_constant_result`` does) is instead run once, in Python, while the
    graph is traced, which is when PyTorch's own ``mse_loss`` warns under torch.compile too.
    """
    warnings.warn(message, stacklevel=stacklevel + 1)


warn._dynamo_marked_constant = True  # type: ignore[attr-defined]


class Reduction(enum.IntEnum):
    """How the elementwise losses are combined; the values are ATen's."""

    NONE = 0
    MEAN = 1
    SUM = 2


_BY_NAME = {"none": Reduction.NONE, "mean": Reduction.MEAN, "sum": Reduction.SUM}


def parse_reduction(reduction: object, stacklevel: int = 3) -> Reduction:
    """Turn a ``reduction`` value into a :class:`Reduction`, exactly as PyTorch accepts it.

    Args:
        reduction: ``'none'``, ``'mean'``, ``'sum'`` or the deprecated ``'elementwise_mean'``.
        stacklevel: Where the deprecation warning for ``'elementwise_mean'`` points.

    Returns:
        The reduction.

    Raises:
        ValueError: For any other value, with PyTorch's message.
    """
    if isinstance(reduction, str):
        found = _BY_NAME.get(reduction)
        if found is not None:
            return found
        if reduction == "elementwise_mean":
            warn(
                "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
                stacklevel=stacklevel,
            )
            return Reduction.MEAN
    raise ValueError(f"{reduction} is not a valid value for reduction")


def legacy_reduction(
    size_average: bool | None, reduce: bool | None, stacklevel: int = 3
) -> ReductionName:
    """Map the deprecated ``size_average``/``reduce`` flags to a reduction name, with the warning.

    Args:
        size_average: Average (true, the default) or sum over elements.
        reduce: Reduce (true, the default) or return the elementwise losses.
        stacklevel: Where the deprecation warning points.

    Returns:
        ``'mean'``, ``'sum'`` or ``'none'``, as :func:`torch.nn._reduction.legacy_get_string`.
    """
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    name: ReductionName
    if size_average and reduce:
        name = "mean"
    elif reduce:
        name = "sum"
    else:
        name = "none"
    warn(
        f"size_average and reduce args will be deprecated, please use reduction='{name}' instead.",
        stacklevel=stacklevel,
    )
    return name
