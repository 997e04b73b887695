"""Command line: ``python -m mseloss demo`` and ``python -m mseloss bench``."""

from __future__ import annotations

import sys

__all__ = ["main"]

_USAGE = """usage: python -m mseloss {demo,bench} [options]   (or: mseloss {demo,bench} [options])

commands:
  demo    train a small autoencoder with torch.nn.MSELoss and with mseloss.MSELoss, compare
  bench   time mseloss against eager PyTorch and torch.compile, interleaved in one process

Add --help after a command for its options."""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the demo or the benchmark; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from mseloss.demo import main as demo_main

        return demo_main(rest)
    if command == "bench":
        from mseloss.bench import main as bench_main

        return bench_main(rest)
    print(f"unknown command {command!r}; {_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
