"""``patch()``: make PyTorch's own ``mse_loss`` and ``MSELoss`` run mseloss, and undo it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from mseloss.functional import mse_loss
from mseloss.modules import MSELoss

__all__ = ["is_patched", "patch", "patched", "unpatch"]

#: (owner, attribute, replacement). ``MSELoss.forward`` is replaced on the class, so modules
#: created before the call change too.
_TARGETS: list[tuple[Any, str, Any]] = [
    (torch.nn.functional, "mse_loss", mse_loss),
    (torch.nn.MSELoss, "forward", MSELoss.forward),
]

_lock = threading.RLock()
_originals: list[tuple[Any, str, Any]] = []
_open_blocks = 0  # patched() blocks not yet exited
_patched_by_blocks = False  # whether the outermost open block made the patch


def is_patched() -> bool:
    """Whether :func:`patch` is in force."""
    return bool(_originals)


def patch() -> None:
    """Route ``torch.nn.functional.mse_loss`` and every ``torch.nn.MSELoss`` through mseloss.

    Calling it again while patched does nothing. If any replacement fails, those already made are
    undone before the error propagates, so PyTorch is left as it was.

    Example:
        >>> import torch, mseloss
        >>> mseloss.patch()
        >>> torch.nn.functional.mse_loss is mseloss.mse_loss
        True
        >>> mseloss.unpatch()
        >>> torch.nn.functional.mse_loss is mseloss.mse_loss
        False
    """
    with _lock:
        if _originals:
            return
        done: list[tuple[Any, str, Any]] = []
        try:
            for owner, name, replacement in _TARGETS:
                original = owner.__dict__[name] if name in vars(owner) else getattr(owner, name)
                setattr(owner, name, replacement)
                done.append((owner, name, original))
        except BaseException:
            for owner, name, original in reversed(done):
                setattr(owner, name, original)
            raise
        _originals.extend(done)


def unpatch() -> None:
    """Restore PyTorch's own objects (the very same ones); does nothing when not patched."""
    with _lock:
        while _originals:
            owner, name, original = _originals.pop()
            setattr(owner, name, original)


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """:func:`patch` for the enclosed block.

    Blocks may overlap (nested, or in several threads): PyTorch stays patched until the last open
    block exits, and is then unpatched only if the blocks made the patch.

    Example:
        >>> import torch, mseloss
        >>> with mseloss.patched():
        ...     torch.nn.functional.mse_loss is mseloss.mse_loss
        True
    """
    global _open_blocks, _patched_by_blocks
    with _lock:
        if _open_blocks == 0:
            _patched_by_blocks = not is_patched()
            patch()
        _open_blocks += 1
    try:
        yield
    finally:
        with _lock:
            _open_blocks -= 1
            if _open_blocks == 0 and _patched_by_blocks:
                unpatch()
