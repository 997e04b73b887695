"""Shared test configuration: the backends under test and the central tolerance table."""

from __future__ import annotations

import os

import pytest
import torch

# Triton's interpreter must be chosen before Triton is first imported (PyTorch's test utilities
# import it): without a GPU, the Triton kernels are tested on CPU tensors through it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import mseloss

#: Backends run on CPU tensors by the parity grids ("triton" has its own module).
CPU_BACKENDS = ("reference", "numba")

#: (atol, rtol) against a float64 reference, for results rounded once into each dtype.
#: float32 gets two ulps of relative slack, the half types one ulp of their own precision.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-6, 2.5e-7),
    torch.float16: (1e-4, 1e-3),
    torch.bfloat16: (1e-3, 8e-3),
}


def assert_matches_reference(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Compare ``actual`` with a float64 ``expected`` rounded into ``actual``'s dtype."""
    atol, rtol = TOLERANCES[actual.dtype]
    expected = expected.detach().to(actual.dtype).double()
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=rtol, equal_nan=True)


@pytest.fixture(params=CPU_BACKENDS)
def backend(request: pytest.FixtureRequest):
    """Run the test body under each CPU backend."""
    with mseloss.use_backend(request.param):
        yield request.param
