"""Values and gradients equal a float64 evaluation of PyTorch's own mse_loss, over a grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import assert_matches_reference

import mseloss

SHAPES = [(), (0,), (1,), (7,), (41, 401, 3), (2, 3, 0, 4), (3, 5, 7), (70_001,)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
REDUCTIONS = ["mean", "sum", "none"]


def _pair(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def _reference(x, y, reduction, upstream=None):
    """Loss and gradients of PyTorch's mse_loss evaluated in float64."""
    xr = x.detach().double().requires_grad_()
    yr = y.detach().double().requires_grad_()
    loss = F.mse_loss(xr, yr, reduction=reduction)
    g = torch.ones_like(loss) if upstream is None else upstream.double()
    gx, gy = torch.autograd.grad(loss, (xr, yr), g)
    return loss, gx, gy


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_value_and_gradients(backend, shape, dtype, reduction):
    x, y = _pair(shape, dtype)
    x.requires_grad_()
    y.requires_grad_()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    assert loss.dtype == dtype
    assert loss.shape == (torch.Size(shape) if reduction == "none" else torch.Size([]))
    gen = torch.Generator().manual_seed(1)
    upstream = torch.rand(loss.shape, generator=gen, dtype=torch.float64).to(dtype) + 0.5
    gx, gy = torch.autograd.grad(loss, (x, y), upstream)
    ref_loss, ref_gx, ref_gy = _reference(x, y, reduction, upstream)
    assert_matches_reference(loss, ref_loss)
    assert_matches_reference(gx, ref_gx)
    assert_matches_reference(gy, ref_gy)
    assert gx.dtype == dtype
    assert gy.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_upstream_gradient_one_and_three(backend, dtype, reduction):
    x, y = _pair((1000,), dtype)
    x.requires_grad_()
    mseloss.mse_loss(x, y, reduction=reduction).backward()
    _, ref_gx, _ = _reference(x, y, reduction)
    assert_matches_reference(x.grad, ref_gx)
    x.grad = None
    (mseloss.mse_loss(x, y, reduction=reduction) * 3).backward()
    assert_matches_reference(x.grad, 3 * ref_gx)


@pytest.mark.parametrize("needs", [(True, False), (False, True), (True, True)])
def test_only_the_operands_that_need_a_gradient_get_one(backend, needs):
    x, y = _pair((5, 6), torch.float32)
    x.requires_grad_(needs[0])
    y.requires_grad_(needs[1])
    mseloss.mse_loss(x, y).backward()
    _, ref_gx, ref_gy = _reference(x, y, "mean")
    if needs[0]:
        assert_matches_reference(x.grad, ref_gx)
    else:
        assert x.grad is None
    if needs[1]:
        assert_matches_reference(y.grad, ref_gy)
    else:
        assert y.grad is None


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_retained_graph_accumulates(backend, reduction):
    x, y = _pair((64,), torch.float32)
    x.requires_grad_()
    y.requires_grad_()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    upstream = torch.full_like(loss, 1.0)
    for _ in range(3):
        loss.backward(upstream, retain_graph=True)
    _, ref_gx, ref_gy = _reference(x, y, reduction)
    assert_matches_reference(x.grad, 3 * ref_gx)
    assert_matches_reference(y.grad, 3 * ref_gy)


LAYOUTS = {
    "transposed": lambda t: t.transpose(0, 1),
    "strided": lambda t: t[:, ::2],
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "expanded": lambda t: t[:, :1].expand(-1, t.shape[1], -1, -1),
    "storage_offset": lambda t: t[1:],
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_layouts_give_the_values_of_contiguous_copies(backend, layout, reduction, dtype):
    x, y = _pair((4, 6, 5, 3), dtype)
    xs = LAYOUTS[layout](x).requires_grad_()
    ys = LAYOUTS[layout](y)
    loss = mseloss.mse_loss(xs, ys, reduction=reduction)
    upstream = torch.rand(loss.shape, dtype=torch.float64).to(dtype) + 0.5
    (gx,) = torch.autograd.grad(loss, xs, upstream)
    ref_loss, ref_gx, _ = _reference(xs.contiguous(), ys.contiguous(), reduction, upstream)
    assert_matches_reference(loss, ref_loss)
    assert_matches_reference(gx, ref_gx)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mixed_layouts(backend, reduction):
    x, y = _pair((4, 6, 5, 3), torch.float32)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    yt = y.transpose(1, 3).contiguous().transpose(1, 3)  # same values, other memory order
    loss = mseloss.mse_loss(x, yt, reduction=reduction)
    ref_loss, ref_gx, _ = _reference(x, yt, reduction)
    assert_matches_reference(loss, ref_loss)
    (gx,) = torch.autograd.grad(loss, x, torch.ones_like(loss))
    assert_matches_reference(gx, ref_gx)


def test_none_keeps_channels_last(backend):
    x, y = _pair((2, 3, 4, 5), torch.float32)
    x = x.contiguous(memory_format=torch.channels_last)
    y = y.contiguous(memory_format=torch.channels_last)
    out = mseloss.mse_loss(x, y, reduction="none")
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert out.stride() == F.mse_loss(x, y, reduction="none").stride()
    assert_matches_reference(out, (x.double() - y.double()) ** 2)


@pytest.mark.parametrize(
    ("input_dtype", "target_dtype"),
    [
        (torch.float32, torch.float64),
        (torch.float64, torch.float32),
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float16),
        (torch.float32, torch.int64),
        (torch.float16, torch.int32),
        (torch.float32, torch.bool),
        (torch.int64, torch.float32),
    ],
    ids=str,
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_type_promotion_matches_pytorch(backend, input_dtype, target_dtype, reduction):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 7, generator=gen) * 3).to(input_dtype)
    y = (torch.randn(6, 7, generator=gen) * 3).to(target_dtype)
    if input_dtype.is_floating_point:
        x.requires_grad_()
    if target_dtype.is_floating_point:
        y.requires_grad_()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    expected = F.mse_loss(x, y, reduction=reduction)
    assert loss.dtype == expected.dtype
    assert_matches_reference(loss, F.mse_loss(x.double(), y.double(), reduction=reduction))
    operands = [t for t in (x, y) if t.requires_grad]
    grads = torch.autograd.grad(loss, operands, torch.ones_like(loss))
    ref_grads = torch.autograd.grad(expected, operands, torch.ones_like(expected))
    for grad, ref_grad, operand in zip(grads, ref_grads, operands):
        assert grad.dtype == operand.dtype == ref_grad.dtype
        torch.testing.assert_close(grad.double(), ref_grad.double(), rtol=1e-2, atol=1e-3)


BROADCASTS = [((3, 1), (1, 4)), ((5,), (4, 5)), ((2, 1, 3), (4, 1)), ((), (3, 2)), ((6, 1), ())]


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize(("input_shape", "target_shape"), BROADCASTS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_broadcasting_values_and_gradients(backend, input_shape, target_shape, reduction):
    x, _ = _pair(input_shape, torch.float32, seed=4)
    _, y = _pair(target_shape, torch.float32, seed=5)
    x.requires_grad_()
    y.requires_grad_()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    upstream = torch.rand(loss.shape, dtype=torch.float32) + 0.5
    gx, gy = torch.autograd.grad(loss, (x, y), upstream)
    ref_loss, ref_gx, ref_gy = _reference(x, y, reduction, upstream)
    assert_matches_reference(loss, ref_loss)
    assert gx.shape == x.shape
    assert gy.shape == y.shape
    torch.testing.assert_close(gx.double(), ref_gx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gy.double(), ref_gy, rtol=1e-5, atol=1e-6)


def test_numba_backend_really_runs_the_kernels(monkeypatch):
    from mseloss.kernels import numba_cpu

    calls = []
    original = numba_cpu.sse_forward
    monkeypatch.setattr(numba_cpu, "sse_forward", lambda *a: calls.append(1) or original(*a))
    with mseloss.use_backend("numba"):
        mseloss.mse_loss(torch.ones(3), torch.zeros(3))
    with mseloss.use_backend("reference"):
        mseloss.mse_loss(torch.ones(3), torch.zeros(3))
    assert calls == [1]
