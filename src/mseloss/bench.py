"""``python -m mseloss bench``: mseloss against eager PyTorch and ``torch.compile``, interleaved.

Every provider is timed in the same process, round-robin, sample by sample, so that a noisy
neighbour slows all of them alike; the table reports the minimum and median of the samples and
the ratios of the medians. GB/s counts the bytes a fused implementation must move: forward
reads ``x`` and ``y``; forward+backward also writes the gradient of ``x``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mseloss.functional import mse_loss

__all__ = ["Result", "main", "measure"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Result:
    """Timings of one provider on one case."""

    mode: str
    dtype: str
    n: int
    provider: str
    min_ms: float
    median_ms: float
    gbps: float


def _step(
    loss_fn: Callable[..., torch.Tensor], mode: str, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    if mode == "forward":

        def forward() -> None:
            loss_fn(x, y)

        return forward

    def forward_backward() -> None:
        x.grad = None
        loss_fn(x, y).backward()

    return forward_backward


def measure(
    n: int,
    dtype: torch.dtype,
    mode: str,
    providers: dict[str, Callable[..., torch.Tensor]],
    samples: int,
) -> list[Result]:
    """Time each provider on ``n`` elements, interleaved sample by sample.

    Args:
        n: Elements of input and target.
        dtype: Their dtype.
        mode: ``"forward"`` (no gradient) or ``"forward+backward"``.
        providers: Name to loss function.
        samples: Timed samples per provider.

    Returns:
        One :class:`Result` per provider.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen).to(dtype).requires_grad_(mode != "forward")
    y = torch.randn(n, generator=gen).to(dtype)
    steps = {name: _step(fn, mode, x, y) for name, fn in providers.items()}
    for step in steps.values():  # warm-up: compilation, caches, thread pools
        for _ in range(3):
            step()
    start = time.perf_counter()
    steps[next(iter(steps))]()
    calls = max(1, int(2e-3 / max(time.perf_counter() - start, 1e-7)))  # ~2 ms per sample
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(samples):
        for name, step in steps.items():
            begin = time.perf_counter()
            for _ in range(calls):
                step()
            times[name].append((time.perf_counter() - begin) / calls)
    moved = n * x.element_size() * (2 if mode == "forward" else 3)
    results = []
    for name, values in times.items():
        median = statistics.median(values)
        results.append(
            Result(
                mode,
                str(dtype).removeprefix("torch."),
                n,
                name,
                min(values) * 1e3,
                median * 1e3,
                moved / median / 1e9,
            )
        )
    return results


def _table(results: list[Result]) -> str:
    lines = [
        f"{'mode':<17}{'dtype':<9}{'N':>6}  {'provider':<9}{'min ms':>10}{'median ms':>11}"
        f"{'GB/s':>8}{'eager/ours':>12}{'compile/ours':>14}"
    ]
    by_case: dict[tuple[str, str, int], dict[str, Result]] = {}
    for r in results:
        by_case.setdefault((r.mode, r.dtype, r.n), {})[r.provider] = r
    for (mode, dtype, n), rows in by_case.items():
        ours = rows["mseloss"].median_ms
        for name, r in rows.items():
            eager = rows["eager"].median_ms / ours if name == "mseloss" else float("nan")
            compiled = (
                rows["compile"].median_ms / ours
                if name == "mseloss" and "compile" in rows
                else float("nan")
            )
            ratio = f"{eager:>12.2f}{compiled:>14.2f}" if name == "mseloss" else ""
            lines.append(
                f"{mode:<17}{dtype:<9}{'2^' + str(n.bit_length() - 1):>6}  {name:<9}"
                f"{r.min_ms:>10.4f}{r.median_ms:>11.4f}{r.gbps:>8.1f}{ratio}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mseloss bench",
        description="Time mseloss, eager PyTorch and torch.compile in one process, interleaved "
        "sample by sample; print min and median ms per call, GB/s and the ratios of the medians.",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10, 16, 20, 24],
        help="log2 of the element counts (default: 10 16 20 24)",
    )
    parser.add_argument(
        "--dtypes", nargs="+", choices=sorted(_DTYPES), default=["float32", "bfloat16"]
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["forward", "forward+backward"],
        default=["forward", "forward+backward"],
    )
    parser.add_argument("--samples", type=int, default=15, help="timed samples per provider")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--csv", default=None, help="also write the results to this CSV file")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be positive")
    if args.samples < 1:
        parser.error("--samples must be positive")
    if any(not 0 <= size <= 30 for size in args.sizes):
        parser.error("--sizes must be log2 element counts between 0 and 30")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    providers: dict[str, Callable[..., torch.Tensor]] = {"mseloss": mse_loss, "eager": F.mse_loss}
    if not args.no_compile:
        from torch import _dynamo

        # One specialisation per (size, dtype, mode): keep them all instead of falling back to
        # eager after the default eight.
        _dynamo.config.recompile_limit = 64
        providers["compile"] = torch.compile(F.mse_loss, dynamic=False)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.samples} interleaved samples per provider",
        flush=True,
    )
    results: list[Result] = []
    for mode in args.modes:
        for dtype_name in args.dtypes:
            for log2 in args.sizes:
                print(f"  {mode} {dtype_name} 2^{log2} ...", file=sys.stderr, flush=True)
                results += measure(1 << log2, _DTYPES[dtype_name], mode, providers, args.samples)
    print(_table(results))
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["mode", "dtype", "n", "provider", "min_ms", "median_ms", "gbps"])
            for r in results:
                writer.writerow(
                    [
                        r.mode,
                        r.dtype,
                        r.n,
                        r.provider,
                        f"{r.min_ms:.5f}",
                        f"{r.median_ms:.5f}",
                        f"{r.gbps:.2f}",
                    ]
                )
        print(f"wrote {args.csv}")
    return 0
