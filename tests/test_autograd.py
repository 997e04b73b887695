"""gradcheck, gradgradcheck, double backward, forward AD and concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

import mseloss

REDUCTIONS = ["none", "mean", "sum"]


def _operands(shape_x=(3, 4), shape_y=(3, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(shape_y, generator=gen, dtype=torch.float64, requires_grad=True)
    return x, y


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck(backend, reduction):
    x, y = _operands()

    def fn(a, b):
        return mseloss.mse_loss(a, b, reduction=reduction)

    assert torch.autograd.gradcheck(fn, (x, y))
    assert torch.autograd.gradgradcheck(fn, (x, y))


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_with_broadcasting(backend, reduction):
    x, y = _operands((3, 1), (1, 4))

    def fn(a, b):
        return mseloss.mse_loss(a, b, reduction=reduction)

    assert torch.autograd.gradcheck(fn, (x, y))
    assert torch.autograd.gradgradcheck(fn, (x, y))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_double_backward_matches_pytorch(backend, reduction):
    x, y = _operands(seed=1)
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    gx, gy = torch.autograd.grad(loss.sum() * 3, (x, y), create_graph=True)
    hx, hy = torch.autograd.grad((gx * gx).sum() + gy.sum(), (x, y))
    xr, yr = x.detach().requires_grad_(), y.detach().requires_grad_()
    ref = F.mse_loss(xr, yr, reduction=reduction)
    rgx, rgy = torch.autograd.grad(ref.sum() * 3, (xr, yr), create_graph=True)
    rhx, rhy = torch.autograd.grad((rgx * rgx).sum() + rgy.sum(), (xr, yr))
    torch.testing.assert_close(gx, rgx)
    torch.testing.assert_close(gy, rgy)
    torch.testing.assert_close(hx, rhx)
    torch.testing.assert_close(hy, rhy)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_forward_ad_matches_pytorch(backend, reduction):
    x, y = _operands(seed=2)
    tx, ty = torch.randn_like(x), torch.randn_like(y)
    with forward_ad.dual_level():
        ours = forward_ad.unpack_dual(
            mseloss.mse_loss(
                forward_ad.make_dual(x, tx), forward_ad.make_dual(y, ty), reduction=reduction
            )
        )
        theirs = forward_ad.unpack_dual(
            F.mse_loss(
                forward_ad.make_dual(x, tx), forward_ad.make_dual(y, ty), reduction=reduction
            )
        )
    torch.testing.assert_close(ours.primal, theirs.primal)
    torch.testing.assert_close(ours.tangent, theirs.tangent)


def test_concurrent_calls_from_python_threads():
    """Several threads share the helper pool; each result equals the single-threaded one."""
    gen = torch.Generator().manual_seed(3)
    inputs = [torch.randn(600_000, generator=gen) for _ in range(6)]
    target = torch.randn(600_000, generator=gen)
    with mseloss.use_backend("numba"):
        expected = [mseloss.mse_loss(x, target) for x in inputs]
    results: dict[int, list[torch.Tensor]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with mseloss.use_backend("numba"):
                x = inputs[i].clone().requires_grad_()
                out = []
                for _ in range(5):
                    loss = mseloss.mse_loss(x, target)
                    loss.backward()
                    out.append(loss.detach())
                results[i] = [*out, x.grad]
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i, x in enumerate(inputs):
        for loss in results[i][:-1]:
            assert torch.equal(loss, expected[i])
        torch.testing.assert_close(results[i][-1], 5 * 2 * (x - target) / x.numel())


def test_broadcasting_never_materialises_the_broadcast():
    """(n, 1) against (1, n) with n = 2**14: the broadcast holds 2**28 floats (1 GiB)."""
    code = """
import resource, warnings, torch, mseloss
warnings.simplefilter("ignore")
n = 1 << 14
x = torch.randn(n, 1, requires_grad=True); y = torch.randn(1, n, requires_grad=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for reduction in ("mean", "sum"):
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    loss.backward()
    xs, ys = x.detach().double(), y.detach().double()
    exact = ((xs.square().sum() * n + ys.square().sum() * n - 2 * xs.sum() * ys.sum()))
    exact = exact / n / n if reduction == "mean" else exact
    assert abs(loss.item() / exact.item() - 1) < 1e-5, (loss.item(), exact.item())
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 256, f"peak memory grew by {out.stdout.strip()} MiB"


def test_inplace_modification_after_forward_is_detected():
    """As in PyTorch, the kernels' backward refuses operands changed since the forward."""
    x = torch.randn(5, requires_grad=True)
    y = torch.randn(5)
    with mseloss.use_backend("numba"):
        loss = mseloss.mse_loss(x, y)
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
