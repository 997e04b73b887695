"""The deliberate differences from PyTorch: exact half types, an exact 2/N, exact float32 sums."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mseloss

KERNEL_BACKENDS = ["numba", "reference"]


def _round_half_exactly(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """float64 values rounded once (to nearest, ties to even) into a half type."""
    if dtype == torch.float16:
        return torch.from_numpy(values.astype(np.float16))  # numpy rounds float64 directly
    # bfloat16: round to odd at float32 precision, then to nearest even (exact double rounding).
    nearest = values.astype(np.float32)
    bits = nearest.view(np.uint32).copy()
    inexact = nearest.astype(np.float64) != values
    away = np.abs(nearest.astype(np.float64)) > np.abs(values)
    bits[inexact & away] -= 1
    bits[inexact] |= 1
    return torch.from_numpy(bits.view(np.float32)).to(torch.bfloat16)


def _exact_loss(x: torch.Tensor, y: torch.Tensor, reduction: str) -> Fraction:
    squares = [Fraction(a) - Fraction(b) for a, b in zip(x.double().tolist(), y.double().tolist())]
    total = sum((d * d for d in squares), Fraction(0))
    return total / len(squares) if reduction == "mean" else total


def _float32_ulp(value: float) -> float:
    return float(np.spacing(np.float32(abs(value))))


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_float16_mean_does_not_overflow(backend):
    x = torch.zeros(10, dtype=torch.float16)
    x[3] = 300
    y = torch.zeros(10, dtype=torch.float16)
    assert torch.isinf(F.mse_loss(x, y))  # PyTorch rounds 90000 to float16 before reducing
    with mseloss.use_backend(backend):
        assert mseloss.mse_loss(x, y).item() == 9000.0
        assert mseloss.mse_loss(x, y, reduction="sum").item() == math.inf  # 90000 > 65504


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_none_is_rounded_once_from_the_exact_square(backend, dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(200_000, generator=gen) * 4).to(dtype)
    y = (torch.randn(200_000, generator=gen) * torch.rand(200_000, generator=gen)).to(dtype)
    exact = (x.double() - y.double()).square()  # exact in float64 for these magnitudes
    expected = _round_half_exactly(exact.numpy(), dtype)
    with mseloss.use_backend(backend):
        out = mseloss.mse_loss(x, y, reduction="none")
    if backend == "numba":
        assert torch.equal(out, expected)
    else:  # plain torch ops round float32 squares: within one unit of the last place
        torch.testing.assert_close(out, expected, atol=0, rtol=2**-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_half_reductions_are_rounded_once(dtype, reduction):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3001, generator=gen).to(dtype)
    y = torch.randn(3001, generator=gen).to(dtype)
    exact = _exact_loss(x, y, reduction)
    expected = _round_half_exactly(np.array([float(exact)]), dtype)[0]
    with mseloss.use_backend("numba"):
        assert mseloss.mse_loss(x, y, reduction=reduction).item() == expected.item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("upstream", [1.0, 0.3, 65536.0])
def test_half_mean_gradient_is_rounded_once(dtype, upstream):
    gen = torch.Generator().manual_seed(2)
    x = (torch.randn(5000, generator=gen) * 10).to(dtype).requires_grad_()
    y = torch.randn(5000, generator=gen).to(dtype)
    with mseloss.use_backend("numba"):
        loss = mseloss.mse_loss(x, y)
        (grad,) = torch.autograd.grad(loss, x, torch.tensor(upstream, dtype=dtype))
    g = float(torch.tensor(upstream, dtype=dtype))
    exact = 2.0 * (x.detach().double() - y.double()) / x.numel() * g
    assert torch.equal(grad, _round_half_exactly(exact.numpy(), dtype))


@pytest.mark.slow
def test_backward_scale_two_over_n_is_not_rounded_to_float16():
    n = 40_000_000
    x = torch.full((n,), 1000.0, dtype=torch.float16, requires_grad=True)
    y = torch.zeros(n, dtype=torch.float16)
    exact = np.float16(2.0 * 1000.0 / n)  # 5e-05, rounded once
    (theirs,) = torch.autograd.grad(F.mse_loss(x, y), x)
    assert abs(float(theirs[0]) / float(exact) - 1) > 0.15  # PyTorch: 2/N rounded first
    with mseloss.use_backend("numba"):
        (ours,) = torch.autograd.grad(mseloss.mse_loss(x, y), x)
    assert ours[0].item() == float(exact)
    assert ours[-1].item() == float(exact)


@pytest.mark.parametrize("n", [1, 3, 16_385, 1_000_003, (1 << 22) + 123])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_float32_is_within_one_ulp_of_the_exact_value(n, reduction):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen) * 100 + 3
    y = torch.randn(n, generator=gen)
    d = x.double().numpy() - y.double().numpy()  # exact: same binade, float32 inputs
    exact = math.fsum((d * d).tolist())
    if reduction == "mean":
        exact /= n
    with mseloss.use_backend("numba"):
        ours = mseloss.mse_loss(x, y, reduction=reduction).item()
    assert abs(ours - exact) <= _float32_ulp(exact)


@pytest.fixture(params=["openmp-team", "thread-pool"])
def threading_scheme(request, monkeypatch):
    """Run under PyTorch's OpenMP team (where found) and under the fallback thread pool."""
    from mseloss.kernels import numba_cpu

    if request.param == "thread-pool":
        monkeypatch.setattr(numba_cpu, "_GOMP_PARALLEL", None)
    elif numba_cpu._GOMP_PARALLEL is None:
        pytest.skip("PyTorch does not run on GNU OpenMP here")
    return request.param


def _per_thread_count(x, y, reduction, upstream, counts):
    """Loss and input gradient from the numba kernels under each torch thread count."""
    threads = torch.get_num_threads()
    results = []
    try:
        for count in counts:
            torch.set_num_threads(count)
            with mseloss.use_backend("numba"):
                loss = mseloss.mse_loss(x, y, reduction=reduction)
                (grad,) = torch.autograd.grad(loss, x, upstream)
            results.append((loss, grad))
    finally:
        torch.set_num_threads(threads)
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert torch.equal(grad, results[0][1])
    return results[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_threaded_kernels_match_one_thread(threading_scheme, dtype, reduction):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn((1 << 19) + 3, generator=gen).to(dtype).requires_grad_()
    y = torch.randn((1 << 19) + 3, generator=gen).to(dtype)
    upstream = torch.rand((1 << 19) + 3 if reduction == "none" else (), generator=gen).to(dtype)
    loss, _ = _per_thread_count(x, y, reduction, upstream, (1, 2, 3))
    exact = (x.detach().double() - y.double()).square()
    expected = exact.mean() if reduction == "mean" else exact
    torch.testing.assert_close(loss.double(), expected.to(dtype).double(), rtol=8e-3, atol=1e-6)


def test_results_do_not_depend_on_the_thread_count(threading_scheme):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn((1 << 21) + 5, generator=gen, requires_grad=True)
    y = torch.randn((1 << 21) + 5, generator=gen)
    _per_thread_count(x, y, "mean", torch.tensor(1.0), (1, 2, 3, 8))
