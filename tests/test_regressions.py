"""Cases found by review: each once broke, each compared with PyTorch or an exact value."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mseloss
from mseloss.__main__ import main as cli


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (torch.randn(3), torch.tensor(0.5, dtype=torch.float64)),
        (torch.tensor(0.5, dtype=torch.float64), torch.randn(3)),
        (torch.randn(3).half(), torch.tensor(0.5, dtype=torch.float64)),
        (torch.randn(2, 3).bfloat16(), torch.tensor(2.0)),
    ],
    ids=["f32-0d64", "0d64-f32", "f16-0d64", "bf16-0d32"],
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_zero_dim_operand_promotes_as_pytorch(x, y, reduction):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = mseloss.mse_loss(x, y, reduction=reduction)
        theirs = F.mse_loss(x, y, reduction=reduction)
        weighted = mseloss.mse_loss(x, y, reduction=reduction, weight=torch.ones(x.shape))
        weighted_theirs = F.mse_loss(x, y, reduction=reduction, weight=torch.ones(x.shape))
    assert ours.dtype == theirs.dtype
    assert weighted.dtype == weighted_theirs.dtype
    torch.testing.assert_close(ours, theirs, rtol=1e-2, atol=1e-3)


def test_weighted_integer_mean_divides_truly():
    x, y, w = torch.tensor([1, 2]), torch.tensor([4, 0]), torch.tensor([1, 2])
    ours = mseloss.mse_loss(x, y, weight=w)
    assert ours.dtype == F.mse_loss(x, y, weight=w).dtype
    assert ours.item() == pytest.approx(17 / 3)


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_empty_broadcast_and_double_backward(backend):
    with mseloss.use_backend(backend):
        x = torch.randn(0, 3, requires_grad=True)
        y = torch.randn(1, 3, requires_grad=True)
        mseloss.mse_loss(x, y).backward()
        assert x.grad.shape == (0, 3)
        torch.testing.assert_close(y.grad, torch.zeros(1, 3))
        (g,) = torch.autograd.grad(mseloss.mse_loss(x, torch.randn(0, 3)), x, create_graph=True)
        assert g.shape == (0, 3)


def test_thread_count_changes_while_other_threads_compute():
    x = torch.randn(1 << 19)
    y = torch.randn(1 << 19)
    expected = mseloss.mse_loss(x, y)
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        try:
            while not stop.is_set():
                assert torch.equal(mseloss.mse_loss(x, y), expected)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=worker)
    threads = torch.get_num_threads()
    thread.start()
    try:
        for count in (1, 2, 3, 4) * 10:
            torch.set_num_threads(count)
            assert torch.equal(mseloss.mse_loss(x, y), expected)
    finally:
        stop.set()
        thread.join()
        torch.set_num_threads(threads)
    assert not errors


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_batched_gradients(reduction):
    x = torch.randn(4, requires_grad=True)
    y = torch.randn(4)
    upstream = torch.randn((3, 4) if reduction == "none" else (3,))
    ours = torch.autograd.grad(
        mseloss.mse_loss(x, y, reduction=reduction), x, upstream, is_grads_batched=True
    )[0]
    theirs = torch.autograd.grad(
        F.mse_loss(x, y, reduction=reduction), x, upstream, is_grads_batched=True
    )[0]
    torch.testing.assert_close(ours, theirs)


def test_parameters_use_the_kernels(monkeypatch):
    from mseloss.kernels import numba_cpu

    calls = []
    original = numba_cpu.sse_forward
    monkeypatch.setattr(numba_cpu, "sse_forward", lambda *a: calls.append(1) or original(*a))
    p = torch.nn.Parameter(torch.randn(100))
    y = torch.randn(100)
    loss = mseloss.mse_loss(p, y)
    loss.backward()
    assert calls == [1]
    torch.testing.assert_close(loss, F.mse_loss(p, y))
    torch.testing.assert_close(p.grad, 2 * (p - y).detach() / 100)


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_broadcast_none_is_rounded_once_like_the_same_shape_path(dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(300, 1, generator=gen) * 100).to(dtype)
    y = (torch.randn(1, 200, generator=gen) * 1e-3).to(dtype)
    broadcast = mseloss.mse_loss(x, y, reduction="none")
    expanded = mseloss.mse_loss(x.expand(300, 200), y.expand(300, 200), reduction="none")
    assert torch.equal(broadcast, expanded)


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_broadcast_float32_mean_is_within_one_ulp():
    x = torch.full((4,), 1.3995361328125)
    y = torch.tensor([0.0013299580896273255])
    exact = float(np.mean((x.double().numpy() - y.double().numpy()) ** 2))
    ours = mseloss.mse_loss(x, y).item()
    assert abs(ours - exact) <= np.spacing(np.float32(exact))


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize(
    ("x", "y"),
    [
        (
            torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
            torch.randn(2, 3, 4, 5),
        ),
        (
            torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
            torch.randn(1, 3, 4, 5),
        ),
        (torch.randn(5, 6).t(), torch.randn(6, 5)),
    ],
    ids=["channels_last", "channels_last-broadcast", "transposed"],
)
def test_none_output_follows_the_input_layout(x, y):
    ours = mseloss.mse_loss(x, y, reduction="none")
    theirs = F.mse_loss(x, y, reduction="none")
    assert ours.stride() == theirs.stride()
    torch.testing.assert_close(ours, theirs)


def test_jit_trace():
    traced = torch.jit.trace(mseloss.MSELoss(), (torch.randn(2, 3), torch.randn(2, 3)))
    x, y = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(traced(x, y), F.mse_loss(x, y))


def test_legacy_warning_comes_before_the_broadcast_error():
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="must match the size"):
            mseloss.mse_loss(torch.ones(3), torch.ones(4), size_average=False)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="must match the size"):
            F.mse_loss(torch.ones(3), torch.ones(4), size_average=False)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def test_float8_error_matches_pytorch():
    x = torch.ones(3).to(torch.float8_e4m3fn)
    with pytest.raises(NotImplementedError) as theirs:
        F.mse_loss(x, x)
    with pytest.raises(NotImplementedError) as ours:
        mseloss.mse_loss(x, x)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--threads", "0"],
        ["bench", "--samples", "0"],
        ["bench", "--sizes", "31"],
        ["demo", "--epochs", "0"],
        ["demo", "--threads", "0"],
    ],
)
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_broadcast_sum_does_not_depend_on_the_thread_count():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 1000, generator=gen, dtype=torch.float64)
    y = torch.randn(1000, generator=gen, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(mseloss.mse_loss(x, y, reduction="sum"))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)
    torch.testing.assert_close(results[0], ((x - y) ** 2).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"size_average": False}, {"reduction": "elementwise_mean"}],
    ids=["broadcast", "legacy", "elementwise_mean"],
)
def test_warnings_do_not_break_a_fullgraph_compile(kwargs):
    x = torch.randn(4, 5)
    y = torch.randn(5) if not kwargs else torch.randn(4, 5)
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: mseloss.mse_loss(a, b, **kwargs), fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = compiled(x, y)
        theirs = F.mse_loss(x, y, **kwargs)
    texts = {str(w.message) for w in caught}
    expected = {t for t in texts if "deprecated" in t or "target size" in t}
    assert expected, texts
    torch.testing.assert_close(ours, theirs)


def test_overlapping_patched_blocks_keep_the_patch_until_the_last_exits():
    original = F.mse_loss
    first, second = mseloss.patched(), mseloss.patched()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert torch.nn.functional.mse_loss is mseloss.mse_loss
    second.__exit__(None, None, None)
    assert torch.nn.functional.mse_loss is original
    assert not mseloss.is_patched()


@pytest.mark.parametrize(
    ("x", "y", "w"),
    [
        (torch.randn(()), torch.randn(3), torch.rand((), dtype=torch.float64)),
        (torch.randn(()).bfloat16(), torch.randn(3).bfloat16(), torch.rand(())),
    ],
    ids=["f32-f64", "bf16-f32"],
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_weighted_zero_dim_weight_promotes_as_pytorch(x, y, w, reduction):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = mseloss.mse_loss(x, y, weight=w, reduction=reduction)
        theirs = F.mse_loss(x, y, weight=w, reduction=reduction)
        exact = F.mse_loss(x.double(), y.double(), weight=w.double(), reduction=reduction)
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours.double(), exact.to(ours.dtype).double(), rtol=1e-2, atol=1e-5)
