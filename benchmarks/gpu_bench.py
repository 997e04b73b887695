"""GPU benchmark and large-tensor check of mseloss's Triton backend.

Times three modes against eager PyTorch (``torch.nn.functional.mse_loss``) and ``torch.compile``
of it, with ``triton.testing.do_bench`` (L2 cache flushed before every run; median reported):

* ``fwd``: ``mse_loss(x, y)`` (mean);
* ``fwd+bwd``: the same, then ``.backward()`` for ``x`` (``x.grad = None`` before each step);
* ``none``: ``mse_loss(x, y, reduction="none")``.

Byte model (the traffic a fused implementation cannot avoid, ``s`` bytes per element):

* ``fwd``: read x and y: ``2 N s``;
* ``fwd+bwd``: forward reads x and y, backward reads them again and writes grad x: ``5 N s``
  (writing the gradient in the forward saves nothing on the GPU: the backward would still have
  to scale it by the upstream gradient, read + write, unless it knew that gradient to be one,
  which costs a host sync);
* ``none``: read x and y, write the output: ``3 N s``.

GB/s is these bytes over the median time; ``%peak`` divides it by ``PEAK_GBPS`` (environment,
default 4800 for an H200's HBM3e). ``t/eager`` and ``t/compile`` are time ratios of mseloss to
the others (below 1: mseloss is faster). Rows go to ``$OUT/gpu_bench.csv`` (``OUT`` defaults to
``./gpu_out``).

The large-tensor check runs bfloat16 tensors of ``2**31 + 17`` elements through the mean, sum,
'none' and backward paths and compares them, chunk by chunk, with a float64 reference: it
catches 32-bit offset overflows. It is skipped when free GPU memory is short.

``--smoke`` runs everything on the CPU through Triton's interpreter with tiny sizes and a plain
timer, to catch errors in this script without a GPU.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MODES = ("fwd", "fwd+bwd", "none")
PROVIDERS = ("mseloss", "eager", "compile")
BYTES_PER_ELEMENT_PASS = {"fwd": 2, "fwd+bwd": 5, "none": 3}  # multiples of N * itemsize

# do_bench's budgets in milliseconds per case: modest, the whole device check has minutes.
WARMUP_MS = 20
REP_MS = 60

LARGE_N = 2**31 + 17
LARGE_CHUNK = 2**27  # elements per reference chunk: 1 GiB of float64 per operand


@dataclass
class Row:
    """One timed case."""

    mode: str
    dtype: str
    n: int
    provider: str
    ms: float
    ms_p20: float
    ms_p80: float
    bytes: int
    gbps: float
    pct_peak: float
    t_over_eager: float
    t_over_compile: float
    note: str = ""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, interpreter, tiny sizes")
    parser.add_argument("--sizes", default="20,24,26,28", help="log2 of N, comma separated")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--out", default=os.environ.get("OUT", "./gpu_out"))
    parser.add_argument(
        "--compile-budget-s",
        type=float,
        default=150.0,
        help="stop timing torch.compile once its warm-ups took this long in total",
    )
    parser.add_argument("--skip-large", action="store_true", help="skip the 2**31+17 check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported
    import torch
    import triton

    import mseloss

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --smoke to exercise this script on the CPU", file=sys.stderr)
        return 2
    peak = float(os.environ.get("PEAK_GBPS", "4800"))
    sizes = [2**12, 2**12 + 5] if args.smoke else [2 ** int(s) for s in args.sizes.split(",")]
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, triton {triton.__version__}, device {device}", end="")
    if device == "cuda":
        print(f" ({torch.cuda.get_device_name()}), peak {peak:g} GB/s", end="")
    print()

    ok = True
    if not args.skip_large:  # first: correctness matters more than the timings
        n = 3 * 4096 + 17 if args.smoke else LARGE_N
        chunk = 1000 if args.smoke else LARGE_CHUNK
        ok = _check_large(torch, mseloss, device, n, chunk)

    bench = _Bench(torch, triton, mseloss, device, args.compile_budget_s)
    rows: list[Row] = []
    path = out_dir / "gpu_bench.csv"
    with path.open("w", newline="") as f:  # written as it goes: a timeout keeps what was done
        writer = csv.DictWriter(f, fieldnames=[field.name for field in fields(Row)])
        writer.writeheader()
        for mode in MODES:
            for dtype in dtypes:
                for n in sizes:
                    case_rows = bench.case(mode, dtype, n, peak)
                    _print_rows(case_rows, header=not rows)
                    rows.extend(case_rows)
                    writer.writerows(asdict(r) for r in case_rows)
                    f.flush()
    print(f"\nwrote {path}")
    print("\nsummary: mseloss rows (median ms; t/x < 1: mseloss faster)")
    _print_rows([r for r in rows if r.provider.startswith("mseloss")], header=True)
    if not args.skip_large:
        print(f"large check ({'smoke' if args.smoke else LARGE_N}): {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


class _Bench:
    """Times one case for every provider, with the compile warm-up budget shared across cases."""

    def __init__(
        self, torch: Any, triton: Any, mseloss: Any, device: str, compile_budget_s: float
    ) -> None:
        self.torch = torch
        self.triton = triton
        self.mseloss = mseloss
        self.device = device
        self.compile_budget_s = compile_budget_s
        self.compile_spent_s = 0.0
        functional = torch.nn.functional
        dynamo = torch._dynamo.config
        for knob in ("cache_size_limit", "recompile_limit"):  # one graph per dtype, N, grad
            if hasattr(dynamo, knob):
                setattr(dynamo, knob, 256)

        def mean(x: Any, y: Any) -> Any:
            return functional.mse_loss(x, y)

        def none(x: Any, y: Any) -> Any:
            return functional.mse_loss(x, y, reduction="none")

        self.eager = {"mean": mean, "none": none}
        self.compiled = {k: torch.compile(f, dynamic=False) for k, f in self.eager.items()}

    def _ours(self, reduction: str) -> Callable[[Any, Any], Any]:
        mseloss = self.mseloss

        def ours(x: Any, y: Any) -> Any:
            with mseloss.use_backend("triton"):
                return mseloss.mse_loss(x, y, reduction=reduction)

        return ours

    def _time(self, step: Callable[[], None], grad_to_none: list[Any] | None) -> list[float]:
        """Median, 20th and 80th percentile of the step's time in ms."""
        if self.device == "cuda":
            result = self.triton.testing.do_bench(
                step,
                warmup=WARMUP_MS,
                rep=REP_MS,
                grad_to_none=grad_to_none,
                quantiles=[0.5, 0.2, 0.8],
            )
            return [float(v) for v in result]
        samples = []
        for _ in range(5):
            for t in grad_to_none or []:
                t.grad = None
            start = time.perf_counter()
            step()
            samples.append((time.perf_counter() - start) * 1e3)
        samples.sort()
        return [statistics.median(samples), samples[1], samples[-2]]

    def case(self, mode: str, dtype: Any, n: int, peak: float) -> list[Row]:
        torch = self.torch
        gen = torch.Generator(device=self.device).manual_seed(n)
        x = torch.randn(n, device=self.device, dtype=dtype, generator=gen)
        y = torch.randn(n, device=self.device, dtype=dtype, generator=gen)
        reduction = "none" if mode == "none" else "mean"
        backward = mode == "fwd+bwd"
        if backward:
            x.requires_grad_()
        functions = {
            "mseloss": self._ours(reduction),
            "eager": self.eager[reduction],
            "compile": self.compiled[reduction],
        }
        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = BYTES_PER_ELEMENT_PASS[mode] * n * itemsize
        dtype_name = str(dtype).removeprefix("torch.")
        timings: dict[str, list[float]] = {}
        notes: dict[str, str] = {}
        reference = None
        for provider, fn in functions.items():
            if provider == "compile" and self.compile_spent_s > self.compile_budget_s:
                notes[provider] = "skipped: compile budget spent"
                continue
            step = _step(fn, x, y, backward)
            value = None
            try:
                start = time.perf_counter()
                value = fn(x, y)  # warm-up (the compilation, for torch.compile)
                if backward:
                    value.backward()
                    x.grad = None
                _synchronize(torch, self.device)
                if provider == "compile":
                    self.compile_spent_s += time.perf_counter() - start
                if reference is None:
                    reference = value.detach().float()
                else:  # every provider computes the same loss
                    torch.testing.assert_close(
                        value.detach().float(), reference, rtol=2e-2, atol=1e-3
                    )
                timings[provider] = self._time(step, [x] if backward else None)
            except Exception as error:  # a provider failing must not end the run
                if provider == "mseloss":
                    raise
                notes[provider] = f"failed: {type(error).__name__}: {error}"[:200]
            del value
        ours = timings["mseloss"][0]
        rows = []
        for provider in functions:
            ms, p20, p80 = timings.get(provider, [math.nan] * 3)
            rows.append(
                _row(
                    mode,
                    dtype_name,
                    n,
                    provider,
                    (ms, p20, p80),
                    nbytes,
                    peak,
                    timings,
                    notes.get(provider, ""),
                )
            )
        if mode == "fwd" and dtype == torch.float32:
            rows.append(self._float32_accumulation(x, y, nbytes, peak, ours, timings))
        return rows

    def _float32_accumulation(
        self,
        x: Any,
        y: Any,
        nbytes: int,
        peak: float,
        ours_ms: float,
        timings: dict[str, list[float]],
    ) -> Row:
        """mseloss's forward with float32 instead of float64 partial sums, for comparison."""
        from mseloss.kernels import triton_gpu

        saved = triton_gpu._REDUCE_DTYPE[self.torch.float32]
        triton_gpu._REDUCE_DTYPE[self.torch.float32] = self.triton.language.float32
        try:
            fn = self._ours("mean")
            fn(x, y)
            ms, p20, p80 = self._time(_step(fn, x, y, False), None)
        finally:
            triton_gpu._REDUCE_DTYPE[self.torch.float32] = saved
        return _row(
            "fwd",
            "float32",
            x.numel(),
            "mseloss-f32acc",
            (ms, p20, p80),
            nbytes,
            peak,
            timings,
            f"float32 partial sums; t/float64-partials = {ms / ours_ms:.3f}",
        )


def _row(
    mode: str,
    dtype: str,
    n: int,
    provider: str,
    timing: tuple[float, float, float],
    nbytes: int,
    peak: float,
    timings: dict[str, list[float]],
    note: str,
) -> Row:
    """One table row: median and quantile times, GB/s, % of peak and ratios to the baselines."""
    ms, p20, p80 = timing
    gbps = math.nan if math.isnan(ms) else nbytes / ms / 1e6
    return Row(
        mode=mode,
        dtype=dtype,
        n=n,
        provider=provider,
        ms=ms,
        ms_p20=p20,
        ms_p80=p80,
        bytes=nbytes,
        gbps=gbps,
        pct_peak=100 * gbps / peak,
        t_over_eager=ms / timings["eager"][0] if "eager" in timings else math.nan,
        t_over_compile=ms / timings["compile"][0] if "compile" in timings else math.nan,
        note=note,
    )


def _step(fn: Callable[[Any, Any], Any], x: Any, y: Any, backward: bool) -> Callable[[], None]:
    if backward:

        def forward_backward() -> None:
            fn(x, y).backward()

        return forward_backward

    def forward() -> None:
        fn(x, y)

    return forward


def _synchronize(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _print_rows(rows: list[Row], header: bool) -> None:
    if header:
        print(
            f"{'mode':8} {'dtype':9} {'N':>11} {'provider':15} {'ms':>9} {'GB/s':>8} "
            f"{'%peak':>6} {'t/eager':>8} {'t/compile':>9}  note"
        )
    for r in rows:
        print(
            f"{r.mode:8} {r.dtype:9} {r.n:>11} {r.provider:15} {r.ms:9.4f} {r.gbps:8.1f} "
            f"{r.pct_peak:6.1f} {r.t_over_eager:8.3f} {r.t_over_compile:9.3f}  {r.note}"
        )


def _check_large(torch: Any, mseloss: Any, device: str, n: int, chunk: int) -> bool:
    """bfloat16 tensors of ``n`` elements against a chunked float64 reference."""
    dtype = torch.bfloat16
    needed = 8 * n + 6 * chunk * 8  # x, y, out, grad (2 bytes each) + float64 chunk temporaries
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        if free < needed * 1.1:
            gib = 2**30
            print(f"\nlarge check skipped: {free / gib:.1f} GiB free, {needed / gib:.1f} needed")
            return True
    print(f"\nlarge check: {n} bfloat16 elements ({n - 2**31:+d} past 2**31)")
    start = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(7)
    x = torch.randn(n, device=device, dtype=dtype, generator=gen)
    y = torch.randn(n, device=device, dtype=dtype, generator=gen)
    bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]

    def diff(i: int, j: int) -> Any:
        return x[i:j].double() - y[i:j].double()

    sse = sum(float((diff(i, j) ** 2).sum()) for i, j in bounds)
    failures = []

    def check(name: str, actual: Any, expected: Any, atol: float = 0.0) -> None:
        try:
            torch.testing.assert_close(
                actual.double(), expected.to(dtype).double(), rtol=8e-3, atol=atol
            )
        except AssertionError as error:
            failures.append(f"{name}: {str(error)[:400]}")

    with mseloss.use_backend("triton"):
        for reduction, value in (("mean", sse / n), ("sum", sse)):
            loss = mseloss.mse_loss(x, y, reduction=reduction)
            check(reduction, loss.cpu(), torch.tensor(value, dtype=torch.float64))
        out = mseloss.mse_loss(x, y, reduction="none")
        for i, j in bounds:
            check(f"none[{i}:{j}]", out[i:j], diff(i, j) ** 2)
        del out
        x.requires_grad_()
        mseloss.mse_loss(x, y).backward()
        grad = x.grad
        assert grad is not None
        for i, j in bounds:
            check(f"grad[{i}:{j}]", grad[i:j], 2.0 / n * diff(i, j), atol=1e-15)
    _synchronize(torch, device)
    elapsed = time.perf_counter() - start
    if failures:
        print(f"large check FAILED ({elapsed:.1f} s):")
        for failure in failures[:10]:
            print("  " + failure)
        return False
    print(f"large check passed: mean, sum, none and grad ({len(bounds)} chunks, {elapsed:.1f} s)")
    return True


if __name__ == "__main__":
    sys.exit(main())
