"""The Triton backend gives the values and gradients of a float64 evaluation of PyTorch's mse_loss.

On a machine with a CUDA GPU the tests run on CUDA tensors, compiled; without one they run on CPU
tensors through Triton's interpreter (``TRITON_INTERPRET=1``), which is slow, hence the small
shapes. The module is skipped when Triton is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

INTERPRET = not torch.cuda.is_available()
DEVICE = "cpu" if INTERPRET else "cuda"

# The interpreter must be chosen before Triton decorates any kernel, its own library's included,
# i.e. before Triton is first imported (importing mseloss or torch's test utilities may do it).
# The variable is put back afterwards and set again around each test (fixture below) so that other
# test modules see the environment they started with.
_saved_interpret = os.environ.get("TRITON_INTERPRET")
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"
try:
    triton = pytest.importorskip("triton")
    import mseloss
    from mseloss.kernels import triton_gpu
finally:
    if _saved_interpret is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _saved_interpret


def _library_interpretable() -> bool:
    """Whether Triton's own jit functions (tl.sum, tl.zeros...) can run under the interpreter.

    They are decorated when Triton is first imported: not if that happened earlier in this process
    without TRITON_INTERPRET=1 (tests/conftest.py imports mseloss, which may import Triton).
    """
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(triton.language.sum, InterpretedFunction)


#: The tests of this module then run in a fresh process (test_whole_module_in_a_fresh_process).
RUN_ELSEWHERE = INTERPRET and not _library_interpretable()
_FRESH = "MSELOSS_TRITON_TESTS_FRESH_PROCESS"
if RUN_ELSEWHERE and os.environ.get(_FRESH):  # no second hand-off
    raise RuntimeError("Triton's library is not interpretable even in a fresh process")


@pytest.fixture(autouse=True)
def _interpretable(request: pytest.FixtureRequest) -> None:
    if RUN_ELSEWHERE and request.node.originalname != "test_whole_module_in_a_fresh_process":
        pytest.skip("Triton was imported before TRITON_INTERPRET=1: run in a fresh process")


@pytest.mark.skipif(not RUN_ELSEWHERE, reason="the tests run in this process")
def test_whole_module_in_a_fresh_process():
    env = {**os.environ, "TRITON_INTERPRET": "1", _FRESH: "1"}
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


SHAPES = [(), (0,), (1,), (7,), (41, 3), (3, 5, 7), (5000,)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
REDUCTIONS = ["mean", "sum", "none"]

#: (atol, rtol) against a float64 reference rounded into each dtype: the table of the CPU backends
#: (tests/conftest.py; this module stands alone so that a bare GPU machine can run it), with one
#: more bfloat16 ulp under the interpreter, whose float32 -> bfloat16 conversion truncates where
#: GPUs round to nearest.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-6, 2.5e-7),
    torch.float16: (1e-4, 1e-3),
    torch.bfloat16: (1e-3, 1.6e-2 if INTERPRET else 8e-3),
}


def assert_matches_reference(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Compare ``actual`` with a float64 ``expected`` rounded into ``actual``'s dtype."""
    assert actual.device.type == DEVICE
    atol, rtol = TOLERANCES[actual.dtype]
    expected = expected.detach().to(actual.dtype).double().cpu()
    torch.testing.assert_close(
        actual.detach().double().cpu(), expected, atol=atol, rtol=rtol, equal_nan=True
    )


@pytest.fixture(params=[DEVICE])
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The device the kernels run on, with the Triton backend forced."""
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    with mseloss.use_backend("triton"):
        yield request.param


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the calls of the backend's entry points, so no test passes through the reference."""
    calls = dict.fromkeys(("sse_forward", "squared_error", "mse_backward"), 0)

    def counting(name: str, original):
        def spy(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return spy

    for name in calls:
        monkeypatch.setattr(triton_gpu, name, counting(name, getattr(triton_gpu, name)))
    return calls


def _pair(shape, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x.to(device, dtype), y.to(device, dtype)


def _reference(x, y, reduction, upstream=None):
    """Loss and gradients of PyTorch's mse_loss evaluated in float64 on the CPU."""
    xr = x.detach().double().cpu().requires_grad_()
    yr = y.detach().double().cpu().requires_grad_()
    loss = F.mse_loss(xr, yr, reduction=reduction)
    g = torch.ones_like(loss) if upstream is None else upstream.double().cpu()
    gx, gy = torch.autograd.grad(loss, (xr, yr), g)
    return loss, gx, gy


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_value_and_gradients(device, kernel_calls, shape, dtype, reduction):
    x, y = _pair(shape, dtype, device)
    x.requires_grad_()
    y.requires_grad_()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    assert loss.dtype == dtype
    assert loss.shape == (torch.Size(shape) if reduction == "none" else torch.Size([]))
    gen = torch.Generator().manual_seed(1)
    upstream = torch.rand(loss.shape, generator=gen, dtype=torch.float64) + 0.5
    upstream = upstream.to(device, dtype)
    gx, gy = torch.autograd.grad(loss, (x, y), upstream)
    ref_loss, ref_gx, ref_gy = _reference(x, y, reduction, upstream)
    assert_matches_reference(loss, ref_loss)
    assert_matches_reference(gx, ref_gx)
    assert_matches_reference(gy, ref_gy)
    assert gx.dtype == gy.dtype == dtype
    if x.numel():
        forward = "squared_error" if reduction == "none" else "sse_forward"
        assert kernel_calls[forward] == 1
        assert kernel_calls["mse_backward"] == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_upstream_gradient_three(device, kernel_calls, dtype, reduction):
    x, y = _pair((1000,), dtype, device)
    x.requires_grad_()
    y.requires_grad_()
    (mseloss.mse_loss(x, y, reduction=reduction) * 3).backward()
    _, ref_gx, ref_gy = _reference(x, y, reduction)
    assert_matches_reference(x.grad, 3 * ref_gx)
    assert_matches_reference(y.grad, 3 * ref_gy)
    assert kernel_calls["mse_backward"] == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_none_with_a_broadcast_upstream_gradient(device, kernel_calls, dtype):
    x, y = _pair((41, 3), dtype, device)
    x.requires_grad_()
    (mseloss.mse_loss(x, y, reduction="none").sum() * 2).backward()  # upstream: expanded 2
    _, ref_gx, _ = _reference(x, y, "sum")
    assert_matches_reference(x.grad, 2 * ref_gx)
    assert kernel_calls["mse_backward"] == 1


def test_none_keeps_channels_last(device, kernel_calls):
    x, y = _pair((2, 3, 4, 5), torch.float32, device)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    y = y.contiguous(memory_format=torch.channels_last)
    out = mseloss.mse_loss(x, y, reduction="none")
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert out.stride() == F.mse_loss(x, y, reduction="none").stride()
    assert_matches_reference(out, (x.double() - y.double()) ** 2)
    upstream = torch.rand_like(out) + 0.5
    (gx,) = torch.autograd.grad(out, x, upstream)
    assert_matches_reference(gx, _reference(x, y, "none", upstream)[1])
    assert kernel_calls["squared_error"] == kernel_calls["mse_backward"] == 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_transposed", [True, False], ids=["both", "input_only"])
def test_transposed_input(device, kernel_calls, reduction, target_transposed):
    x, y = _pair((7, 5), torch.float32, device)
    xt = x.t().requires_grad_()
    yt = y.t() if target_transposed else y.t().contiguous()
    loss = mseloss.mse_loss(xt, yt, reduction=reduction)
    upstream = torch.rand_like(loss) + 0.5
    (gx,) = torch.autograd.grad(loss, xt, upstream)
    ref_loss, ref_gx, _ = _reference(xt, yt, reduction, upstream)
    assert_matches_reference(loss, ref_loss)
    assert_matches_reference(gx, ref_gx)
    assert kernel_calls["mse_backward"] == 1


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_backward_reads_the_upstream_gradient_on_the_device(device, reduction):
    x, y = _pair((300,), torch.float32, device)
    x.requires_grad_()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    if reduction == "none":
        loss = loss.sum()
    loss = loss * 3

    def no_host_copy(*args, **kwargs):
        raise AssertionError("the backward copied a value to the host")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("item", "tolist", "__float__", "__bool__"):
            patch.setattr(torch.Tensor, name, no_host_copy)
        patch.setattr(torch, "equal", no_host_copy)
        if DEVICE == "cuda":  # and any synchronisation at all is an error
            torch.cuda.set_sync_debug_mode("error")
        try:
            loss.backward()
        finally:
            if DEVICE == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    ref_scale = 3.0 if reduction != "mean" else 3.0 / x.numel()
    assert_matches_reference(x.grad, ref_scale * 2 * (x.double() - y.double()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize(
    ("max_partials", "finish_block"), [(2, 1024), (4, 2)], ids=["long_programs", "long_finish"]
)
def test_reduction_split_and_tails(device, monkeypatch, dtype, max_partials, finish_block):
    """Programs looping over several full tiles then a masked tail; a multi-step finish."""
    monkeypatch.setattr(triton_gpu, "MAX_PARTIALS", max_partials)
    monkeypatch.setattr(triton_gpu, "FINISH_BLOCK", finish_block)
    tile = triton_gpu.TILE
    for numel in (3 * tile + 17, 4 * tile, 7 * tile - 1):
        x, y = _pair((numel,), dtype, device, seed=numel)
        for reduction in ("sum", "mean"):
            loss = mseloss.mse_loss(x, y, reduction=reduction)
            assert_matches_reference(loss, F.mse_loss(x.double(), y.double(), reduction=reduction))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_forward_writes_the_gradient(device, dtype):
    """``sse_forward(..., grad)``: the fused forward and gradient pass of the interface."""
    x, y = _pair((2 * triton_gpu.TILE + 3,), dtype, device)
    grad = torch.empty_like(x)
    scale = 1.0 / x.numel()
    loss = triton_gpu.sse_forward(x, y, scale, grad)
    diff = x.double() - y.double()
    assert loss.shape == ()
    assert loss.device == x.device
    assert_matches_reference(loss, (diff**2).mean())
    assert_matches_reference(grad, 2 * scale * diff)


def test_reduction_is_reproducible(device):
    x, y = _pair((9000,), torch.float32, device)
    first = mseloss.mse_loss(x, y)
    assert all(torch.equal(first, mseloss.mse_loss(x, y)) for _ in range(3))


def test_interface_flags():
    assert triton_gpu.PRECOMPUTE_GRAD is False
    assert triton_gpu.upstream_is_one(torch.ones(())) is False
    assert set(triton_gpu.SUPPORTED_DTYPES) == set(DTYPES)


@pytest.mark.parametrize("numel", [1, 4096, 4097, 2**22 + 5, 2**31 + 17, 2**40])
def test_reduction_split_depends_on_the_size_only(numel):
    elements = triton_gpu._program_elements(numel)
    programs = -(-numel // elements)
    assert elements % triton_gpu.TILE == 0
    assert 1 <= programs <= triton_gpu.MAX_PARTIALS


def test_triton_path_needs_no_numba():
    code = (
        "import sys; sys.modules['numba'] = None  # any import of numba fails\n"
        "import torch, mseloss\n"
        "dev = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
        "x = torch.arange(6.0, device=dev, requires_grad=True)\n"
        "with mseloss.use_backend('triton'):\n"
        "    loss = mseloss.mse_loss(x, torch.zeros(6, device=dev))\n"
        "    loss.backward()\n"
        "print(loss.item(), *x.grad.tolist())\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1" if INTERPRET else "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loss, *grad = map(float, out.stdout.split())
    assert loss == pytest.approx(55 / 6)
    assert grad == pytest.approx([2 * i / 6 for i in range(6)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_loss_is_rounded_once_from_the_float64_sum(device, dtype):
    """1 + ulp/2 + 2**-40: just above a tie, which a float32 intermediate would round down to."""
    if dtype == torch.bfloat16 and INTERPRET:
        pytest.skip("the interpreter truncates float32 to bfloat16")
    half_ulp_root = 2.0**-6 if dtype == torch.float16 else 2.0**-4  # squares: ulp/4 at 1
    x = torch.zeros(triton_gpu.TILE + 1, dtype=torch.float64)
    x[0], x[1], x[2] = 1.0, half_ulp_root, half_ulp_root
    x[-1] = 2.0**-20  # in the second program's partial sum: float64 keeps it
    x = x.to(device, dtype)
    loss = mseloss.mse_loss(x, torch.zeros_like(x), reduction="sum")
    ulp = 2.0**-10 if dtype == torch.float16 else 2.0**-7
    assert loss.item() == 1.0 + ulp
