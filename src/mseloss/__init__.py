"""mseloss: a drop-in for ``torch.nn.MSELoss`` and ``torch.nn.functional.mse_loss``, fused.

Example:
    >>> import torch
    >>> from mseloss import MSELoss
    >>> loss = MSELoss()
    >>> loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]))
    tensor(2.)
"""

from mseloss._backend import BACKENDS, current_backend, use_backend
from mseloss._patch import is_patched, patch, patched, unpatch
from mseloss.functional import mse_loss
from mseloss.modules import MSELoss

__all__ = [
    "BACKENDS",
    "MSELoss",
    "current_backend",
    "is_patched",
    "mse_loss",
    "patch",
    "patched",
    "unpatch",
    "use_backend",
]
__version__ = "0.1.0"
