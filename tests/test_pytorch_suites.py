"""PyTorch's own test data for mse_loss (OpInfo) and MSELoss (ModuleInfo), run through mseloss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import TOLERANCES
from torch.testing._internal.common_methods_invocations import op_db
from torch.testing._internal.common_modules import module_db

import mseloss

OPINFO = next(op for op in op_db if op.name == "nn.functional.mse_loss")
MODULEINFO = next(m for m in module_db if m.module_cls is torch.nn.MSELoss)
DTYPES = sorted(OPINFO.dtypes, key=str)


def _call(sample):
    return mseloss.mse_loss(sample.input, *sample.args, **sample.kwargs)


def _samples(dtype, requires_grad=False):
    yield from OPINFO.sample_inputs("cpu", dtype, requires_grad=requires_grad)
    yield from OPINFO.reference_inputs("cpu", dtype, requires_grad=requires_grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_opinfo_samples_match_pytorch_and_numpy_reference(backend, dtype):
    atol, rtol = TOLERANCES[dtype]
    count = 0
    for sample in _samples(dtype):
        ours = _call(sample)
        theirs = OPINFO(sample.input, *sample.args, **sample.kwargs)
        assert ours.dtype == theirs.dtype
        assert ours.shape == theirs.shape
        exact = OPINFO.ref(
            sample.input.double().numpy(),
            *(a.double().numpy() for a in sample.args),
            **sample.kwargs,
        )
        expected = torch.as_tensor(np.asarray(exact)).to(dtype)
        torch.testing.assert_close(ours, expected, atol=atol, rtol=rtol)
        torch.testing.assert_close(ours, theirs, atol=10 * atol, rtol=10 * rtol)
        count += 1
    assert count >= 6


def test_opinfo_gradcheck_gradgradcheck_forward_ad(backend):
    for sample in _samples(torch.float64, requires_grad=True):
        target = sample.args[0].detach().requires_grad_()

        def fn(a, b, kwargs=sample.kwargs):
            return mseloss.mse_loss(a, b, **kwargs)

        inputs = (sample.input, target)
        assert torch.autograd.gradcheck(fn, inputs, check_forward_ad=True)
        assert torch.autograd.gradgradcheck(fn, inputs, check_fwd_over_rev=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_moduleinfo_samples(backend, dtype):
    inputs = MODULEINFO.module_inputs_func(
        MODULEINFO, device="cpu", dtype=dtype, requires_grad=True, training=True
    )
    assert inputs
    for module_input in inputs:
        ctor = module_input.constructor_input
        fwd = module_input.forward_input
        ours = mseloss.MSELoss(*ctor.args, **ctor.kwargs)
        theirs = torch.nn.MSELoss(*ctor.args, **ctor.kwargs)
        out = ours(*fwd.args, **fwd.kwargs)
        expected = theirs(*fwd.args, **fwd.kwargs)
        torch.testing.assert_close(out, expected)
        if module_input.reference_fn is not None:
            ref = module_input.reference_fn(ours, *fwd.args, **fwd.kwargs)
            torch.testing.assert_close(out, ref.to(out.dtype))
        x = fwd.args[0]
        (grad,) = torch.autograd.grad(out.sum(), x)
        (ref_grad,) = torch.autograd.grad(expected.sum(), x)
        torch.testing.assert_close(grad, ref_grad)
