"""``python -m mseloss demo``: one autoencoder trained twice, with torch's loss and with ours.

The two runs start from the same seed and see the same batches; the steps are interleaved so
that both are timed under the same machine load. The demo fails (exit status 1) when the two loss
curves part by more than :data:`CURVE_RTOL`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch

from mseloss.modules import MSELoss

__all__ = ["CURVE_RTOL", "main", "run"]

#: Largest relative difference allowed between the two epoch-loss curves. Both losses are float32
#: means of the same numbers: ours is within one ulp (6e-8) of the exact value, PyTorch's within a
#: few ulps, so each step's loss and gradient differ by about 1e-7 relative. Adam-free plain SGD
#: with momentum on a small autoencoder does not amplify such differences much over tens of
#: epochs: 1e-4 leaves three orders of magnitude of headroom while still catching any real error
#: (a wrong scale, a missing term or a dropped gradient shows up at 1e-2 or more).
CURVE_RTOL = 1e-4


def _progress(done: int, total: int, width: int = 30) -> None:
    if not sys.stderr.isatty():
        return
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} epochs")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _load_digits() -> torch.Tensor:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "The demo needs scikit-learn's bundled digits data: pip install 'mseloss[demo]'"
        ) from None
    images = torch.tensor(load_digits().data, dtype=torch.float32)
    return images / 16.0  # pixel values 0..16 to 0..1


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 64), torch.nn.Sigmoid()
    )


def run(epochs: int, batch_size: int, seed: int) -> tuple[list[float], list[float], float, float]:
    """Train the two autoencoders.

    Args:
        epochs: Passes over the 1797 images.
        batch_size: Images per step.
        seed: Seed for the initial weights and the batch order.

    Returns:
        Per-epoch mean losses with ``torch.nn.MSELoss`` and with ``mseloss.MSELoss``, and the
        median seconds per training step of each.
    """
    data = _load_digits()
    runs: list[tuple[torch.nn.Module, torch.optim.Optimizer, Callable[..., torch.Tensor]]] = []
    criteria: tuple[Callable[..., torch.Tensor], ...] = (torch.nn.MSELoss(), MSELoss())
    for criterion in criteria:
        model = _model(seed)
        runs.append((model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), criterion))
    curves: list[list[float]] = [[], []]
    step_times: list[list[float]] = [[], []]
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        permutation = torch.randperm(len(data), generator=order)
        totals = [0.0, 0.0]
        for start in range(0, len(data), batch_size):
            batch = data[permutation[start : start + batch_size]]
            for i, (model, optimizer, criterion) in enumerate(runs):
                begin = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(batch), batch)
                loss.backward()
                optimizer.step()
                step_times[i].append(time.perf_counter() - begin)
                totals[i] += loss.item() * len(batch)
        for i in range(2):
            curves[i].append(totals[i] / len(data))
        _progress(epoch + 1, epochs)
    medians = [sorted(t)[len(t) // 2] for t in step_times]
    return curves[0], curves[1], medians[0], medians[1]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mseloss demo",
        description="Train a 64-32-64 autoencoder on scikit-learn's digits twice from one seed, "
        "with torch.nn.MSELoss and with mseloss.MSELoss, and compare the loss curves and the "
        f"time per step. Exits with status 1 if the curves differ by more than {CURVE_RTOL:g} "
        "(relative).",
    )
    parser.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and order (default 0)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    print(
        f"Autoencoder 64-32-64 on scikit-learn's digits (1797 images), {args.epochs} epochs, "
        f"batch {args.batch_size}, seed {args.seed}, {torch.get_num_threads()} threads"
    )
    theirs, ours, t_theirs, t_ours = run(args.epochs, args.batch_size, args.seed)
    print(f"{'epoch':>5}  {'torch.nn.MSELoss':>18}  {'mseloss.MSELoss':>18}  {'rel. diff':>9}")
    worst = 0.0
    for epoch, (a, b) in enumerate(zip(theirs, ours), start=1):
        diff = abs(a - b) / abs(a)
        worst = max(worst, diff)
        print(f"{epoch:>5}  {a:>18.10f}  {b:>18.10f}  {diff:>9.2e}")
    print(f"largest relative difference between the curves: {worst:.2e} (allowed {CURVE_RTOL:.0e})")
    print(
        f"median time per step: torch {t_theirs * 1e6:.1f} us, mseloss {t_ours * 1e6:.1f} us, "
        f"ratio torch/mseloss {t_theirs / t_ours:.2f}"
    )
    if not worst <= CURVE_RTOL:
        print("FAIL: the loss curves differ by more than the tolerance", file=sys.stderr)
        return 1
    print("OK: the curves agree")
    return 0
