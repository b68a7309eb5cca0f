"""DistributedDataParallel with low-rank layers: two CPU processes (gloo), replicas bit-identical."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

METHODS = {"abc-psi": {"lr": 0.1, "rtol": 0.5}, "adam": {"lr": 0.1, "rtol": 0.2, "basis_update_every": 3}}
STEPS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _process_group(rank: int, world: int, port: int) -> Iterator[None]:
    """This worker as one of ``world`` CPU processes in a gloo group on ``port`` (one torch thread).

    On leaving, the group is destroyed; a worker that succeeded then ends with
    ``os._exit(0)``.  Now and then a replica aborted after its work was done, in gloo's
    teardown while Python finalized ("terminate called without an active exception",
    SIGABRT; seen in a clean-clone CI run even with the barrier of :func:`_publish`):
    ``os._exit`` skips the finalization, and ``torch.save`` has closed the results file.
    An exception still reaches ``spawn``.
    """
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _publish(rank: int, result: object, out: str) -> None:
    """Rank 0 writes ``result`` to ``out``; then both replicas pass a barrier, so that they
    tear gloo down together (a replica that destroyed its process group while its peer
    was still writing the results occasionally aborted in gloo's teardown at exit)."""
    if rank == 0:
        torch.save(result, out)
    dist.barrier()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One replica: the same seeded model, its own data, DDP gradient averaging."""
    from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer

    with _process_group(rank, world, port):
        results = {}
        for method, options in METHODS.items():
            torch.manual_seed(0)
            model = torch.nn.Sequential(
                LowRankLinear(10, 16, 4, max_rank=6),
                torch.nn.Tanh(),
                LowRankLinear(16, 16, 4, max_rank=6),
                torch.nn.Tanh(),
                torch.nn.Linear(16, 3),
            )
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            opt = LowRankOptimizer(ddp.parameters(), method, **options)
            gen = torch.Generator().manual_seed(1000 + rank)  # different data on each replica
            ranks = set()
            for _ in range(STEPS):
                x, y = torch.randn(16, 10, generator=gen), torch.randint(0, 3, (16,), generator=gen)
                opt.zero_grad()
                torch.nn.functional.cross_entropy(ddp(x), y).backward()
                opt.step()
                ranks.add(tuple(m.rank for m in opt.layers))
            if not opt._open():  # leave a cycle open (both replicas take the same branch)
                x, y = torch.randn(16, 10, generator=gen), torch.randint(0, 3, (16,), generator=gen)
                opt.zero_grad()
                torch.nn.functional.cross_entropy(ddp(x), y).backward()
                opt.step()
            with pytest.raises(RuntimeError, match="finish_cycle"):  # finishing on one replica would diverge
                model.state_dict()
            opt.finish_cycle()
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()] + [model[0].active_rank.float()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            results[method] = {"gathered": gathered, "ranks": sorted(ranks)}
        results["conv"] = _conv_case(rank, world)
        _publish(rank, results, out)


def _conv_case(rank: int, world: int) -> dict:
    """A CNN with a LowRankConv2d and a conv LowRankAdapter (the layers of
    tests/training/test_layers.py, on LowRankLinear's storage), 12 steps of abc-PSI."""
    from lowrank_core.training.torch import LowRankAdapter, LowRankConv2d, LowRankOptimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        LowRankConv2d(1, 6, 3, 2, padding=1, max_rank=4),
        torch.nn.Tanh(),
        LowRankAdapter(torch.nn.Conv2d(6, 6, 3, padding=1), 2, max_rank=4),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 6 * 6, 3),
    )
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = LowRankOptimizer(ddp.parameters(), "abc-psi", lr=0.2, rtol=0.3)
    gen = torch.Generator().manual_seed(2000 + rank)
    ranks = set()
    for _ in range(12):
        x, y = torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
        ranks.add(tuple(m.rank for m in opt.layers))
    opt.finish_cycle()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()] + [m.active_rank.float() for m in opt.layers])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    return {"gathered": gathered, "ranks": sorted(ranks)}


def test_ddp_replicas_stay_bit_identical(tmp_path):
    """Two processes train the same model under DDP on different data for 20 steps of
    abc-PSI and of rank-adaptive Adam: the parameters (fixed shapes, so DDP's buckets
    stay valid across rank changes) and the active ranks of both replicas agree bit for
    bit.  DDP averages the gradients, every replica then runs the same deterministic
    step, so any difference is a bug (the earlier code replaced Parameters when shapes
    changed: DDP failed at step 2, or with find_unused_parameters the replicas drifted
    apart by 0.8-5.6 %).  The ranks change during the run.  A model.state_dict() between
    basis updates raises under torch.distributed instead of finishing the cycle on one
    replica only.  The same holds for a CNN with a LowRankConv2d and a conv
    LowRankAdapter (12 abc-PSI steps with rank changes; the adapter's frozen base is
    compared too)."""
    out = str(tmp_path / "ddp.pt")
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    results = torch.load(out)
    for method, res in results.items():
        a, b = res["gathered"]
        assert torch.equal(a, b), method
        assert len(res["ranks"]) > 1, (method, res["ranks"])


def _fsdp_worker(rank: int, world: int, port: int, out: str) -> None:
    """fully_shard (FSDP2) over a model with a LowRankLinear, then LowRankOptimizer."""
    from torch.distributed.fsdp import fully_shard

    from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer

    with _process_group(rank, world, port):
        torch.manual_seed(0)
        model = torch.nn.Sequential(LowRankLinear(10, 16, 4, max_rank=6), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        fully_shard(model)
        try:
            LowRankOptimizer(model.parameters(), "abc-psi", lr=0.1)
            result = "no error"
        except TypeError as err:
            result = str(err)
        _publish(rank, result, out)


def test_fsdp_sharded_parameters_are_refused(tmp_path):
    """FSDP2's ``fully_shard`` replaces each parameter by a DTensor shard; the optimizer
    needs every layer's whole factors, so it refuses sharded parameters with a TypeError
    naming FSDP and what to use instead, rather than treating the shards as dense
    parameters (which gave "params contain no LowRankLinear factors") or stepping a
    shard as if it were the whole factor.  Two CPU processes (gloo)."""
    pytest.importorskip("torch.distributed.fsdp")
    out = str(tmp_path / "fsdp.pt")
    torch.multiprocessing.spawn(_fsdp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    msg = torch.load(out)
    assert "sharded parameter" in msg
    assert "fully_shard" in msg
    assert "DistributedDataParallel" in msg
