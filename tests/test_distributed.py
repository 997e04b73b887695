"""DDP and DTensor over two gloo processes on this machine, against single-process results.

One pair of processes runs every case (starting them costs a few seconds) and rank 0 saves what
they computed; the tests below compare it with ``torch.nn.functional.mse_loss`` on the full
tensors, computed here in float64.
"""

from __future__ import annotations

import collections
import datetime
import faulthandler
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from tests.conftest import assert_matches_reference
from torch import nn

import mseloss

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

WORLD_SIZE = 2
#: A worker still running after this many seconds dumps its stacks and exits (a hang fails).
WORKER_TIMEOUT_S = 45
UPSTREAM = 3.0  # the upstream gradient of a reduced loss: not one, so the scaling path runs

# DTensor cases: name -> (global shape, sharded dim or None for Replicate(), dtype, values).
# Sharding follows torch.chunk: 7 rows over 2 ranks are 4 + 3, 1 row is 1 + 0.
DTENSOR_CASES: dict[str, tuple[tuple[int, ...], int | None, torch.dtype, str]] = {
    "even": ((8, 3), 0, torch.float64, "randn"),
    "uneven": ((7, 3), 0, torch.float64, "randn"),
    "uneven_dim1": ((3, 5), 1, torch.float64, "randn"),
    "one_rank_empty": ((1, 4), 0, torch.float64, "randn"),
    "empty": ((0, 3), 0, torch.float64, "randn"),  # the mean is nan, as in PyTorch
    "replicate": ((5, 3), None, torch.float64, "randn"),
    "uneven_float32": ((7, 3), 0, torch.float32, "randn"),
    "uneven_bfloat16": ((7, 3), 0, torch.bfloat16, "randn"),
    # One 300 among zeros: the mean is 9000, the local sum 90000 overflows float16.
    "float16_spike": ((10,), 0, torch.float16, "spike"),
}
REDUCTIONS = ("none", "mean", "sum")

# DDP: a small MLP, SGD, the batch split in two equal halves.
DDP_STEPS = 3
DDP_BATCH = 8
DDP_LR = 0.1


def _case_tensors(name: str, reduction: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input, target and the upstream gradient of a 'none' loss, the same in every process."""
    shape, _, dtype, values = DTENSOR_CASES[name]
    generator = torch.Generator().manual_seed(REDUCTIONS.index(reduction))
    x, y, g = (torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(3))
    if values == "spike":
        x, y = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        x.view(-1)[0] = 300.0
    return x.to(dtype), y.to(dtype), g.to(dtype)


def _mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def _ddp_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(DDP_BATCH, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(DDP_BATCH, 2, generator=generator, dtype=torch.float64)
    return x, y


# --------------------------------------------------------------------------------------------
# Worker side (module-level functions: torch.multiprocessing.spawn pickles them by name).
# --------------------------------------------------------------------------------------------


def _count_kernel_calls() -> collections.Counter[str]:
    """Wrap the numba kernels' entry points so that their calls in this process are counted."""
    from mseloss.kernels import numba_cpu

    calls: collections.Counter[str] = collections.Counter()

    def counting(name: str, kernel: Any) -> Any:
        def counted(*args: Any) -> Any:
            calls[name] += 1
            return kernel(*args)

        return counted

    for name in ("sse_forward", "squared_error", "mse_backward"):
        setattr(numba_cpu, name, counting(name, getattr(numba_cpu, name)))
    return calls


def _run_ddp(rank: int) -> list[torch.Tensor]:
    from torch.nn.parallel import DistributedDataParallel

    model = DistributedDataParallel(_mlp())
    optimizer = torch.optim.SGD(model.parameters(), lr=DDP_LR)
    loss_fn = mseloss.MSELoss()
    for step in range(DDP_STEPS):
        x, y = (t.chunk(WORLD_SIZE)[rank] for t in _ddp_batch(step))
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.module.parameters()]


def _run_dtensor_case(
    mesh: Any, name: str, reduction: str, calls: collections.Counter[str]
) -> dict[str, Any]:
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    _, dim, _, _ = DTENSOR_CASES[name]
    placements = [Replicate() if dim is None else Shard(dim)]
    x_full, y_full, g_full = _case_tensors(name, reduction)
    x = distribute_tensor(x_full, mesh, placements).requires_grad_()
    y = distribute_tensor(y_full, mesh, placements).requires_grad_()
    before = calls.copy()
    loss = mseloss.mse_loss(x, y, reduction=reduction)
    if reduction == "none":
        loss.backward(distribute_tensor(g_full, mesh, placements))
    else:
        (loss * UPSTREAM).backward()
    assert x.grad is not None
    assert y.grad is not None
    return {
        "loss": loss.full_tensor(),
        "grad_input": x.grad.full_tensor(),
        "grad_target": y.grad.full_tensor(),
        "placements": (str(x.placements), str(loss.placements), str(x.grad.placements)),
        "local_numel": x.to_local().numel(),
        "calls": dict(calls - before),
    }


def _worker(rank: int, port: int, path: str) -> None:
    faulthandler.dump_traceback_later(WORKER_TIMEOUT_S, exit=True)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=WORKER_TIMEOUT_S),
    )
    try:
        from torch.distributed.device_mesh import init_device_mesh

        calls = _count_kernel_calls()
        results: dict[str, Any] = {"ddp": _run_ddp(rank)}
        mesh = init_device_mesh("cpu", (WORLD_SIZE,))
        with mseloss.use_backend("auto"):  # whatever MSELOSS_BACKEND says: numba on the CPU
            for name in DTENSOR_CASES:
                for reduction in REDUCTIONS:
                    results[name, reduction] = _run_dtensor_case(mesh, name, reduction, calls)
        gathered: list[Any] = [None] * WORLD_SIZE
        dist.all_gather_object(gathered, results)
        if rank == 0:
            torch.save(gathered, path)
    finally:
        dist.destroy_process_group()
        faulthandler.cancel_dump_traceback_later()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# Test side.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two ranks computed (index = rank)."""
    import torch.multiprocessing as mp

    path = Path(tmp_path_factory.mktemp("distributed")) / "results.pt"
    mp.spawn(_worker, args=(_free_port(), str(path)), nprocs=WORLD_SIZE, join=True)
    results: list[dict[str, Any]] = torch.load(path)
    return results


def test_ddp_matches_full_batch_training(ranks: list[dict[str, Any]]) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=DDP_LR)
    for step in range(DDP_STEPS):
        x, y = _ddp_batch(step)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    expected = [p.detach() for p in model.parameters()]
    assert not torch.equal(expected[0], _mlp()[0].weight.detach())  # training moved it
    for rank in ranks:
        torch.testing.assert_close(rank["ddp"], expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", DTENSOR_CASES)
def test_dtensor_matches_single_process(
    ranks: list[dict[str, Any]], name: str, reduction: str
) -> None:
    x, y, g = (t.double().requires_grad_() for t in _case_tensors(name, reduction))
    expected = nn.functional.mse_loss(x, y, reduction=reduction)
    expected.backward(g if reduction == "none" else torch.tensor(UPSTREAM, dtype=torch.float64))
    assert x.grad is not None
    assert y.grad is not None
    dtype = DTENSOR_CASES[name][2]
    for rank in ranks:
        result = rank[name, reduction]
        assert result["loss"].dtype == dtype
        assert_matches_reference(result["loss"], expected)
        assert_matches_reference(result["grad_input"], x.grad)
        assert_matches_reference(result["grad_target"], y.grad)
        input_placements, loss_placements, grad_placements = result["placements"]
        assert grad_placements == input_placements
        if reduction == "none":
            assert loss_placements == input_placements
        else:
            assert loss_placements == "(Replicate(),)"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", DTENSOR_CASES)
def test_dtensor_local_part_runs_fused_kernels(
    ranks: list[dict[str, Any]], name: str, reduction: str
) -> None:
    for rank in ranks:
        result = rank[name, reduction]
        if result["local_numel"] == 0:
            expected = {}  # an empty shard needs no kernel
        elif reduction == "none":
            expected = {"squared_error": 1, "mse_backward": 1}
        else:  # the forward writes the gradient, which the backward only scales
            expected = {"sse_forward": 1}
        assert result["calls"] == expected


def test_uneven_shards_are_uneven(ranks: list[dict[str, Any]]) -> None:
    local = [rank["uneven", "mean"]["local_numel"] for rank in ranks]
    assert local == [12, 9]
    assert [rank["one_rank_empty", "mean"]["local_numel"] for rank in ranks] == [4, 0]
