"""Choosing the kernels: ``use_backend``, ``MSELOSS_BACKEND`` and the per-tensor dispatch rule."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
from collections.abc import Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Literal, cast

import torch

__all__ = ["BACKENDS", "BackendName", "current_backend", "kernels_for", "use_backend"]

BackendName = Literal["auto", "reference", "numba", "triton"]
BACKENDS: tuple[BackendName, ...] = ("auto", "reference", "numba", "triton")
_ENV = "MSELOSS_BACKEND"

_forced: ContextVar[BackendName | None] = ContextVar("mseloss_backend", default=None)
_loaded: dict[str, ModuleType | None] = {}


def _validate(name: object, source: str) -> BackendName:
    if name not in BACKENDS:
        valid = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {valid}")
    if name == "triton" and importlib.util.find_spec("triton") is None:
        raise RuntimeError(
            f"{source}: the 'triton' backend needs Triton, which is not installed; "
            "install it with `pip install triton` (or the package's `gpu` extra)"
        )
    return cast(BackendName, name)


def current_backend() -> BackendName:
    """The backend in force: the innermost :func:`use_backend`, else ``MSELOSS_BACKEND``, else auto.

    Raises:
        ValueError: If ``MSELOSS_BACKEND`` names no backend.
    """
    forced = _forced.get()
    if forced is not None:
        return forced
    return _environment_backend()


@functools.cache
def _environment_backend() -> BackendName:
    """``MSELOSS_BACKEND``, read at the first call of the process (``cache_clear`` re-reads it)."""
    env = os.environ.get(_ENV)
    if not env:
        return "auto"
    return _validate(env.strip().lower(), f"environment variable {_ENV}")


@contextlib.contextmanager
def use_backend(name: BackendName) -> Iterator[None]:
    """Run the enclosed code with one backend.

    ``"auto"`` picks numba kernels for CPU tensors and Triton kernels for CUDA tensors;
    ``"reference"`` uses plain PyTorch operations everywhere; ``"numba"`` and ``"triton"`` force
    their kernels for every input they support, the reference path serving the rest. The setting
    is local to the thread (and to the asyncio task).

    Args:
        name: ``"auto"``, ``"reference"``, ``"numba"`` or ``"triton"``.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
        RuntimeError: For ``"triton"`` when Triton is not installed.

    Example:
        >>> import mseloss, torch
        >>> with mseloss.use_backend("reference"):
        ...     mseloss.mse_loss(torch.zeros(2), torch.ones(2))
        tensor(1.)
    """
    token = _forced.set(_validate(name, "use_backend"))
    try:
        yield
    finally:
        _forced.reset(token)


def _load(name: str) -> ModuleType | None:
    """Import a kernel module once; ``None`` when its compiler is not installed."""
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"mseloss.kernels.{name}")
        except ImportError:
            _loaded[name] = None
    return _loaded[name]


def _triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def kernels_for(tensor: torch.Tensor) -> ModuleType | None:
    """The kernel module for a plain tensor of a kernel dtype, or ``None`` for the reference path.

    Args:
        tensor: The (already type-promoted) input.

    Returns:
        ``mseloss.kernels.numba_cpu``, ``mseloss.kernels.triton_gpu`` or ``None``.
    """
    backend = current_backend()
    if backend == "reference":
        return None
    if tensor.is_cpu:
        if backend == "triton":
            return _load("triton_gpu") if _triton_interpreting() else None
        return _load("numba_cpu")
    if tensor.is_cuda and backend in ("auto", "triton"):
        return _load("triton_gpu")
    return None
