"""The CPU benchmark of the README: ``python -m mseloss bench`` with its CSV kept here.

Run: ``python benchmarks/bench_cpu.py [any options of python -m mseloss bench]``; the results go
to ``benchmarks/results/cpu_bench.csv`` unless ``--csv`` is given.
"""

from __future__ import annotations

import pathlib
import sys

from mseloss.bench import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--csv" not in argv:
        out = pathlib.Path(__file__).parent / "results" / "cpu_bench.csv"
        out.parent.mkdir(exist_ok=True)
        argv += ["--csv", str(out)]
    sys.exit(main(argv))
