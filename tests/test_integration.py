"""torch.compile, torch.func, forward AD, autocast, subclasses, meta tensors and patch()."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import forward_ad
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

import mseloss
from mseloss import _library, _patch

REDUCTIONS = ["none", "mean", "sum"]


class TestCompile:
    @pytest.mark.parametrize("backend", ["auto", "numba"])
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_fullgraph_model_matches_eager(self, reduction, backend):
        from torch._dynamo.testing import CompileCounterWithBackend

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
        criterion = mseloss.MSELoss(reduction=reduction)

        def loss_fn(inp, tgt):
            return criterion(model(inp), tgt).sum()

        inp, tgt = torch.randn(32, 8), torch.randn(32, 8)
        counter = CompileCounterWithBackend("inductor")
        torch._dynamo.reset()
        compiled = torch.compile(loss_fn, fullgraph=True, backend=counter)
        with mseloss.use_backend(backend):
            loss = compiled(inp, tgt)
            loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        eager = F.mse_loss(model(inp), tgt, reduction=reduction).sum()
        eager.backward()
        torch.testing.assert_close(loss, eager)
        for g, p in zip(grads, model.parameters()):
            torch.testing.assert_close(g, p.grad)
        assert counter.frame_count == 1
        targets = [str(n.target) for n in counter.graphs[0].graph.nodes if n.op == "call_function"]
        # auto: Inductor compiles the reference math; a forced kernel backend: our custom op.
        assert ("mseloss.mse_loss.default" in targets) == (backend == "numba")

    @pytest.mark.parametrize("backend", ["auto", "numba"])
    def test_compiled_float16_keeps_the_exact_numerics(self, backend):
        x = torch.zeros(10, dtype=torch.float16)
        x[3] = 300
        torch._dynamo.reset()
        compiled = torch.compile(mseloss.mse_loss, fullgraph=True)
        with mseloss.use_backend(backend):
            assert compiled(x, torch.zeros_like(x)).item() == 9000.0  # 90000 / 10, rounded once

    def test_backend_is_a_trace_time_constant_as_assume_constant_result_marks_it(self):
        from mseloss import _fused

        marked = torch.compiler.assume_constant_result(lambda: "auto")
        attributes = {k: v for k, v in vars(marked).items() if k.startswith("_dynamo")}
        assert attributes
        assert all(getattr(_fused._compile_time_backend, k) == v for k, v in attributes.items())

    @pytest.mark.parametrize("reduction", [0, 1, 2])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
    def test_opcheck(self, reduction, dtype):
        x = torch.randn(3, 4, dtype=dtype, requires_grad=True)
        y = torch.randn(3, 4, dtype=dtype, requires_grad=True)
        torch.library.opcheck(_library._mse_loss, (x, y, reduction))
        upstream = torch.randn((3, 4) if reduction == 0 else (), dtype=dtype, requires_grad=True)
        torch.library.opcheck(_library._mse_loss_backward, (upstream, x, y, reduction))


class TestFunc:
    def _pair(self):
        gen = torch.Generator().manual_seed(1)
        return (
            torch.randn(5, 3, generator=gen, dtype=torch.float64),
            torch.randn(5, 3, generator=gen, dtype=torch.float64),
        )

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_vmap_batched_and_unbatched_target(self, reduction):
        x, y = self._pair()
        ours = vmap(lambda a, b: mseloss.mse_loss(a, b, reduction=reduction))
        theirs = vmap(lambda a, b: F.mse_loss(a, b, reduction=reduction))
        torch.testing.assert_close(ours(x, y), theirs(x, y))
        ours_unbatched = vmap(lambda a: mseloss.mse_loss(a, y[0], reduction=reduction))
        theirs_unbatched = vmap(lambda a: F.mse_loss(a, y[0], reduction=reduction))
        torch.testing.assert_close(ours_unbatched(x), theirs_unbatched(x))

    def test_grad_vjp_jvp_jacobians_hessian(self):
        x, y = self._pair()

        def ours(a):
            return mseloss.mse_loss(a, y)

        def theirs(a):
            return F.mse_loss(a, y)

        torch.testing.assert_close(grad(ours)(x), grad(theirs)(x))
        torch.testing.assert_close(
            vmap(grad(ours))(x[None].expand(2, -1, -1)),
            vmap(grad(theirs))(x[None].expand(2, -1, -1)),
        )
        out, pullback = vjp(ours, x)
        ref_out, ref_pullback = vjp(theirs, x)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(
            pullback(torch.tensor(2.0, dtype=x.dtype)),
            ref_pullback(torch.tensor(2.0, dtype=x.dtype)),
        )
        t = torch.ones_like(x)
        torch.testing.assert_close(jvp(ours, (x,), (t,)), jvp(theirs, (x,), (t,)))
        torch.testing.assert_close(jacrev(ours)(x), jacrev(theirs)(x))
        torch.testing.assert_close(jacfwd(ours)(x), jacfwd(theirs)(x))
        torch.testing.assert_close(hessian(ours)(x), hessian(theirs)(x))

    @pytest.mark.parametrize("target_dtype", [torch.int64, torch.bool])
    def test_forward_ad_with_integer_target_gives_the_float_answer(self, target_dtype):
        x = torch.randn(6, dtype=torch.float64)
        tangent = torch.randn(6, dtype=torch.float64)
        y = (torch.arange(6) % 2).to(target_dtype)
        with forward_ad.dual_level():
            out = forward_ad.unpack_dual(mseloss.mse_loss(forward_ad.make_dual(x, tangent), y))
            ref = forward_ad.unpack_dual(
                F.mse_loss(forward_ad.make_dual(x, tangent), y.to(torch.float64))
            )
            with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
                F.mse_loss(forward_ad.make_dual(x, tangent), y)  # PyTorch 2.13 refuses this
        torch.testing.assert_close(out.primal, ref.primal)
        torch.testing.assert_close(out.tangent, ref.tangent)


class TestAutocast:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_cpu_bfloat16_autocast_computes_in_float32(self, reduction):
        x = torch.randn(4, 5, dtype=torch.bfloat16, requires_grad=True)
        y = torch.randn(4, 5, dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = mseloss.mse_loss(x, y, reduction=reduction)
            theirs = F.mse_loss(x, y, reduction=reduction)
        assert ours.dtype == theirs.dtype == torch.float32
        torch.testing.assert_close(ours, theirs)
        (g,) = torch.autograd.grad(ours.sum(), x)
        (ref_g,) = torch.autograd.grad(theirs.sum(), x)
        assert g.dtype == ref_g.dtype == torch.bfloat16
        torch.testing.assert_close(g, ref_g)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_float16_autocast_computes_in_float32(self):
        x = torch.randn(4, 5, device="cuda", dtype=torch.float16)
        with torch.autocast("cuda", dtype=torch.float16):
            ours = mseloss.mse_loss(x, x * 0.5)
            theirs = F.mse_loss(x, x * 0.5)
        assert ours.dtype == theirs.dtype == torch.float32
        torch.testing.assert_close(ours, theirs)


class TestSubclassesAndMeta:
    def test_torch_function_override_sees_our_function(self):
        seen = []

        class Logged(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                seen.append(func)
                return super().__torch_function__(func, types, args, kwargs or {})

        x = torch.randn(4).as_subclass(Logged)
        y = torch.randn(4)
        out = mseloss.mse_loss(x, y, reduction="sum")
        assert seen[0] is mseloss.mse_loss
        F.mse_loss(x, y, reduction="sum")
        assert F.mse_loss in seen
        torch.testing.assert_close(
            out.as_subclass(torch.Tensor),
            F.mse_loss(x.as_subclass(torch.Tensor), y, reduction="sum"),
        )

    def test_override_can_replace_the_result(self):
        class Replaced(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return "replaced"

        assert mseloss.mse_loss(torch.ones(2).as_subclass(Replaced), torch.ones(2)) == "replaced"

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_meta_tensors(self, reduction):
        x = torch.empty(3, 7, device="meta", dtype=torch.float16)
        y = torch.empty(3, 7, device="meta", dtype=torch.float32)
        out = mseloss.mse_loss(x, y, reduction=reduction)
        ref = F.mse_loss(x, y, reduction=reduction)
        assert (out.shape, out.dtype, out.device) == (ref.shape, ref.dtype, ref.device)


class TestPatch:
    def test_patch_unpatch_restores_the_exact_objects(self):
        functional, forward = F.mse_loss, torch.nn.MSELoss.forward
        module = torch.nn.MSELoss()  # created before the patch
        mseloss.patch()
        try:
            mseloss.patch()  # twice is harmless
            assert mseloss.is_patched()
            assert torch.nn.functional.mse_loss is mseloss.mse_loss
            x = torch.zeros(10, dtype=torch.float16)
            x[3] = 300
            assert module(x, torch.zeros_like(x)).item() == 9000.0  # ours: no float16 overflow
            assert torch.nn.MSELoss()(x, torch.zeros_like(x)).item() == 9000.0
        finally:
            mseloss.unpatch()
        assert not mseloss.is_patched()
        assert torch.nn.functional.mse_loss is functional
        assert torch.nn.MSELoss.forward is forward
        assert "forward" in vars(torch.nn.MSELoss)
        assert torch.isinf(module(x, torch.zeros_like(x)))
        mseloss.unpatch()  # when not patched: nothing

    def test_context_manager(self):
        original = F.mse_loss
        with mseloss.patched():
            assert torch.nn.functional.mse_loss is mseloss.mse_loss
        assert torch.nn.functional.mse_loss is original
        mseloss.patch()
        try:
            with mseloss.patched():
                pass
            assert mseloss.is_patched()  # it was patched before the block: stays patched
        finally:
            mseloss.unpatch()

    def test_failure_part_way_leaves_torch_untouched(self, monkeypatch):
        class Frozen:
            def __setattr__(self, name, value):
                raise AttributeError(f"cannot set {name}")

            thing = None

        originals = (F.mse_loss, torch.nn.MSELoss.forward)
        monkeypatch.setattr(_patch, "_TARGETS", [*_patch._TARGETS, (Frozen(), "thing", 1)])
        with pytest.raises(AttributeError, match="cannot set thing"):
            mseloss.patch()
        assert (torch.nn.functional.mse_loss, torch.nn.MSELoss.forward) == originals
        assert not mseloss.is_patched()

    def test_unmodified_training_script(self, tmp_path):
        script = tmp_path / "train.py"
        script.write_text(
            textwrap.dedent("""
            import torch
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 2)
            criterion = torch.nn.MSELoss()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            data, target = torch.randn(64, 4), torch.randn(64, 2)
            for _ in range(20):
                opt.zero_grad()
                loss = criterion(model(data), target) + torch.nn.functional.mse_loss(
                    model(data), target, reduction="sum") * 1e-3
                loss.backward()
                opt.step()
            print(repr(loss.item()), repr(model.weight.sum().item()))
        """)
        )
        runner = textwrap.dedent(f"""
            import runpy, sys, mseloss
            from mseloss.kernels import numba_cpu
            calls = []
            original = numba_cpu.sse_forward
            numba_cpu.sse_forward = lambda *a: calls.append(1) or original(*a)
            if sys.argv[1] == "patched":
                mseloss.patch()
            runpy.run_path({str(script)!r})
            print(len(calls))
        """)
        runs = {}
        for mode in ("plain", "patched"):
            out = subprocess.run(
                [sys.executable, "-c", runner, mode], capture_output=True, text=True, check=True
            )
            runs[mode] = out.stdout.split()
        assert runs["plain"][2] == "0"
        assert runs["patched"][2] == "40"  # both call sites ran our kernels, 20 steps each
        for ours, theirs in zip(runs["patched"][:2], runs["plain"][:2]):
            assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
