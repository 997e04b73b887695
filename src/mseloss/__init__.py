"""mseloss: a drop-in for ``torch.nn.MSELoss`` and ``torch.nn.functional.mse_loss``, fused."""

from mseloss._backend import BACKENDS, current_backend, use_backend
from mseloss.functional import mse_loss
from mseloss.modules import MSELoss

__all__ = ["BACKENDS", "MSELoss", "current_backend", "mse_loss", "use_backend"]
__version__ = "0.1.0"
