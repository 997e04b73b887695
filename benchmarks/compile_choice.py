"""Under torch.compile: the fused custom op against letting Inductor compile the reference math.

Run: ``python benchmarks/compile_choice.py [--sizes 20 24] [--samples 15]``. Both variants are
compiled with ``fullgraph=True`` and timed interleaved in one process, forward (no gradient) and
forward+backward (``x.grad = None`` each step); the table gives min and median milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import _dynamo

from mseloss import _library, reference
from mseloss._reduction import Reduction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 24])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    _dynamo.config.recompile_limit = 64
    variants = {
        "custom op": torch.compile(
            lambda a, b: _library.mse_op(a, b, Reduction.MEAN), fullgraph=True
        ),
        "reference": torch.compile(
            lambda a, b: reference.mse_loss(a, b, Reduction.MEAN), fullgraph=True
        ),
    }
    print(f"{'mode':<17}{'dtype':<10}{'N':>5}  {'variant':<11}{'min ms':>9}{'median ms':>11}")
    for dtype in args.dtypes:
        for log2 in args.sizes:
            x = torch.randn(1 << log2).to(getattr(torch, dtype)).requires_grad_()
            y = torch.randn(1 << log2).to(getattr(torch, dtype))

            def forward(fn, x=x, y=y):
                with torch.no_grad():
                    fn(x, y)

            def forward_backward(fn, x=x, y=y):
                x.grad = None
                fn(x, y).backward()

            for mode, step in (("forward", forward), ("forward+backward", forward_backward)):
                times: dict[str, list[float]] = {name: [] for name in variants}
                for fn in variants.values():
                    step(fn)
                    step(fn)
                for _ in range(args.samples):
                    for name, fn in variants.items():
                        begin = time.perf_counter()
                        step(fn)
                        times[name].append(time.perf_counter() - begin)
                for name, values in times.items():
                    print(
                        f"{mode:<17}{dtype:<10}{'2^' + str(log2):>5}  {name:<11}"
                        f"{min(values) * 1e3:>9.3f}{statistics.median(values) * 1e3:>11.3f}"
                    )


if __name__ == "__main__":
    main()
