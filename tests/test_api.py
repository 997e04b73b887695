"""Arguments, warnings and errors: the same as torch.nn.functional.mse_loss and nn.MSELoss."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import mseloss


def _outcome(fn, *args, **kwargs):
    """What a call did: (result, [warning texts]) or (exception type, message)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except Exception as error:  # compared with PyTorch's outcome by the caller
            return type(error), str(error)
    return result, [str(w.message) for w in caught]


def _assert_same_outcome(args, kwargs):
    ours = _outcome(mseloss.mse_loss, *args, **kwargs)
    theirs = _outcome(F.mse_loss, *args, **kwargs)
    if isinstance(theirs[0], torch.Tensor):
        assert isinstance(ours[0], torch.Tensor), ours
        torch.testing.assert_close(ours[0], theirs[0], equal_nan=True)
        assert ours[1] == theirs[1]
    else:
        assert ours == theirs


X = torch.tensor([1.0, -2.0, 3.5])
Y = torch.tensor([0.5, 2.0, 3.0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reduction": "none"},
        {"reduction": "sum"},
        {"reduction": "mean"},
        {"reduction": "elementwise_mean"},
        {"reduction": None},
        {"reduction": False},
        {"reduction": "MEAN"},
        {"reduction": "avg"},
        {"size_average": False},
        {"size_average": True},
        {"reduce": False},
        {"reduce": True},
        {"size_average": False, "reduce": True},
        {"size_average": True, "reduce": False},
        {"size_average": False, "reduction": "none"},
        {"reduce": False, "reduction": "bogus"},
        {"weight": torch.tensor([1.0, 2.0, 0.5])},
        {"weight": torch.tensor([1.0, 2.0, 0.5]), "reduction": "sum"},
        {"weight": torch.tensor([1.0, 2.0, 0.5]), "reduction": "none"},
        {"weight": torch.tensor([1.0, 2.0]), "reduction": "none"},
        {"weight": torch.tensor([1.0, 2.0, 0.5]), "reduction": "elementwise_mean"},
        {"weight": torch.tensor([1.0, 2.0, 0.5]), "reduction": "bogus"},
        {"weight": torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)},
        {"weight": torch.tensor([1.0, 2.0, 0.5]), "size_average": False},
    ],
    ids=repr,
)
def test_keyword_arguments_match_pytorch(kwargs):
    _assert_same_outcome((X, Y), kwargs)


@pytest.mark.parametrize(
    "args",
    [
        (X, Y, False),
        (X, Y, None, False),
        (X, Y, False, True),
        (X, Y, None, None, "sum"),
    ],
    ids=repr,
)
def test_positional_legacy_arguments_match_pytorch(args):
    _assert_same_outcome(args, {})


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (torch.ones(3), torch.ones(4)),
        (torch.ones(2, 3), torch.ones(3, 2)),
        (torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long)),
        (torch.ones(3, dtype=torch.int32), torch.ones(3, dtype=torch.int16)),
        (torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)),
        (torch.ones(3, dtype=torch.cfloat), torch.ones(3, dtype=torch.cfloat)),
        (torch.ones(3), torch.ones(3, dtype=torch.cdouble)),
        (torch.ones(3), torch.ones(2, 3)),
        (torch.ones(2, 1), torch.ones(3)),
    ],
    ids=lambda t: f"{tuple(t.shape)}:{t.dtype}",
)
def test_shapes_and_dtypes_match_pytorch(x, y):
    for reduction in ("none", "mean", "sum", "bogus"):
        _assert_same_outcome((x, y), {"reduction": reduction})


def test_shape_mismatch_warning_points_at_the_caller():
    with pytest.warns(
        UserWarning, match=re.escape("Using a target size (torch.Size([2, 3]))")
    ) as w:
        mseloss.mse_loss(torch.ones(3), torch.ones(2, 3))
    assert w[0].filename == __file__


def test_module_warning_points_like_pytorch():
    with pytest.warns(UserWarning, match="Using a target size") as ours:
        mseloss.MSELoss()(torch.ones(3), torch.ones(2, 3))
    with pytest.warns(UserWarning, match="Using a target size") as theirs:
        torch.nn.MSELoss()(torch.ones(3), torch.ones(2, 3))
    assert str(ours[0].message) == str(theirs[0].message)
    assert ours[0].filename.endswith("modules.py")


def test_elementwise_mean_warning_points_at_the_caller():
    with pytest.warns(UserWarning, match="elementwise_mean") as w:
        mseloss.mse_loss(X, Y, reduction="elementwise_mean")
    assert w[0].filename == __file__


def test_legacy_warning_points_at_the_caller():
    with pytest.warns(UserWarning, match="size_average and reduce") as w:
        mseloss.mse_loss(X, Y, size_average=False)
    assert w[0].filename == __file__


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((1.0, Y), "input"),
        ((X, [1.0, 2.0, 3.0]), "target"),
        ((X, Y, None, None, "mean", 2), "weight"),
    ],
)
def test_non_tensor_arguments_raise_type_error(args, name):
    with pytest.raises(TypeError, match=f"argument '{name}' must be Tensor"):
        mseloss.mse_loss(*args)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_empty_inputs(reduction):
    x = torch.empty(0, 3, requires_grad=True)
    loss = mseloss.mse_loss(x, torch.empty(0, 3), reduction=reduction)
    expected = F.mse_loss(x, torch.empty(0, 3), reduction=reduction)
    torch.testing.assert_close(loss, expected, equal_nan=True)
    if reduction == "mean":
        assert torch.isnan(loss)
    if reduction == "sum":
        assert loss.item() == 0.0
    loss.sum().backward()
    assert x.grad is not None
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_zero_dim_inputs(reduction):
    x = torch.tensor(3.0, requires_grad=True)
    loss = mseloss.mse_loss(x, torch.tensor(1.0), reduction=reduction)
    assert loss.shape == ()
    assert loss.item() == 4.0
    loss.backward()
    assert x.grad.item() == 4.0  # 2 * (3 - 1)


class TestModule:
    def test_is_a_torch_mse_loss(self):
        loss = mseloss.MSELoss(reduction="sum")
        assert isinstance(loss, torch.nn.MSELoss)
        assert repr(loss) == repr(torch.nn.MSELoss(reduction="sum")) == "MSELoss()"
        assert loss.reduction == "sum"
        assert mseloss.MSELoss.__constants__ == ["reduction"]
        assert loss.state_dict() == {}

    def test_pytorch_example(self):
        loss = mseloss.MSELoss()
        inp = torch.randn(3, 5, requires_grad=True)
        target = torch.randn(3, 5)
        output = loss(inp, target)
        output.backward()
        torch.testing.assert_close(output, torch.nn.MSELoss()(inp, target))
        torch.testing.assert_close(inp.grad, 2 * (inp - target).detach() / 15)

    @pytest.mark.parametrize(
        ("args", "kwargs", "expected"),
        [
            ((), {}, "mean"),
            ((False,), {}, "sum"),
            ((None, False), {}, "none"),
            ((), {"size_average": True, "reduce": False}, "none"),
            ((False, True, "none"), {}, "sum"),
            ((), {"reduction": "none"}, "none"),
        ],
    )
    def test_constructor_legacy_flags(self, args, kwargs, expected):
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            module = mseloss.MSELoss(*args, **kwargs)
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            torch.nn.MSELoss(*args, **kwargs)
        assert module.reduction == expected
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]

    @pytest.mark.parametrize("reduction", ["MEAN", None, "avg"])
    def test_invalid_reduction_raises_in_forward(self, reduction):
        module = mseloss.MSELoss(reduction=reduction)
        with pytest.raises(ValueError, match=f"^{reduction} is not a valid value for reduction$"):
            module(X, Y)

    def test_pickle_and_state_dict_roundtrip(self):
        module = pickle.loads(pickle.dumps(mseloss.MSELoss(reduction="sum")))
        assert isinstance(module, mseloss.MSELoss)
        assert module.reduction == "sum"
        assert module(X, Y).item() == pytest.approx(F.mse_loss(X, Y, reduction="sum").item())


class TestBackends:
    def test_unknown_name_lists_the_valid_ones(self):
        with (
            pytest.raises(ValueError, match="'auto', 'reference', 'numba', 'triton'"),
            mseloss.use_backend("cuda"),
        ):
            pass

    def test_triton_without_triton_says_how_to_install_it(self, monkeypatch):
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name)
        )
        with (
            pytest.raises(RuntimeError, match=r"needs Triton.*pip install triton"),
            mseloss.use_backend("triton"),
        ):
            pass
        assert mseloss.current_backend() == "auto"

    def test_nesting_restores_the_outer_backend(self):
        assert mseloss.current_backend() == "auto"
        with mseloss.use_backend("reference"):
            with mseloss.use_backend("numba"):
                assert mseloss.current_backend() == "numba"
            assert mseloss.current_backend() == "reference"
        assert mseloss.current_backend() == "auto"

    def test_environment_variable(self, monkeypatch):
        from mseloss import _backend

        monkeypatch.setenv("MSELOSS_BACKEND", "reference")
        _backend._environment_backend.cache_clear()
        try:
            assert mseloss.current_backend() == "reference"
            with mseloss.use_backend("numba"):
                assert mseloss.current_backend() == "numba"
            monkeypatch.setenv("MSELOSS_BACKEND", "fast")
            _backend._environment_backend.cache_clear()
            with pytest.raises(ValueError, match="MSELOSS_BACKEND: unknown backend 'fast'"):
                mseloss.mse_loss(X, Y)
        finally:
            monkeypatch.delenv("MSELOSS_BACKEND")
            _backend._environment_backend.cache_clear()

    def test_environment_variable_in_a_fresh_process(self):
        code = (
            "import torch, mseloss; from mseloss.kernels import numba_cpu as k; calls = [];"
            "f = k.sse_forward; k.sse_forward = lambda *a: calls.append(1) or f(*a);"
            "mseloss.mse_loss(torch.ones(4), torch.zeros(4)); print(len(calls))"
        )
        for value, expected in (("numba", "1"), ("reference", "0"), ("auto", "1")):
            out = subprocess.run(
                [sys.executable, "-c", code],
                env={**__import__("os").environ, "MSELOSS_BACKEND": value},
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout.strip() == expected

    def test_importing_mseloss_does_not_import_the_compilers(self):
        code = "import sys, mseloss; print('numba' in sys.modules, 'triton' in sys.modules)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == ["False", "False"]

    def test_meta_tensors_give_shape_and_dtype(self):
        x = torch.empty(4, 5, device="meta", dtype=torch.bfloat16)
        assert mseloss.mse_loss(x, x).shape == ()
        out = mseloss.mse_loss(x, x, reduction="none")
        assert out.shape == (4, 5)
        assert out.dtype == torch.bfloat16
        assert out.device.type == "meta"


def test_kernel_cache_falls_back_to_the_user_cache_when_the_install_is_read_only(tmp_path):
    code = (
        "import numba.core.caching as caching\n"
        "def read_only(self):\n"
        "    raise OSError('read-only install')\n"
        "caching.InTreeCacheLocator.ensure_cache_path = read_only\n"
        "import torch, mseloss\n"
        "print(mseloss.mse_loss(torch.ones(3), torch.zeros(3)).item())\n"
    )
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1.0"
    assert list(tmp_path.glob("numba/*/numba_cpu._sse_forward_partial-*.nbi"))
