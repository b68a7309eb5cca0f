"""Solves run concurrently in threads: each equals its sequential run, BLAS and OpenMP settings survive.

Guards against the kernels' per-caller BLAS pinning entered and left by several threads at
once (before the fix, OpenBLAS stayed at one thread for the rest of the process after four
concurrent solves), and against any shared mutable state in the kernels' drivers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lowrank_core as lc

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")


def _problem(seed):
    # 300 x 200 factors at rank 20: the augmented 300 x 40 QRs (m k^2 = 480000) are large
    # enough for the kernels to pin the BLAS, so the pin is entered from every thread.
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((300, 200))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((300, 200)), rank=20)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


@pytest.mark.parametrize("method", ["abc-psi", "bug"])
def test_concurrent_solves_equal_sequential_and_restore_blas(method):
    """Four solves in a thread pool give bitwise the results of the same solves run one
    after another, and the BLAS thread counts are the same before and after."""
    cases = [_problem(seed) for seed in range(4)]

    def run(case):
        problem, Y0 = case
        return lc.solve(problem, Y0, (0.0, 0.5), dt=0.1, method=method, linalg="kernels").Y.to_dense()

    run(cases[0])  # loads SciPy's BLAS (the kernels' BLAS), so that it is counted below
    before = _blas_threads()
    sequential = [run(c) for c in cases]
    assert _blas_threads() == before
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, cases))
    assert _blas_threads() == before
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [run(c) for c in cases][0].tobytes() == sequential[0].tobytes()


_FIRST_KERNEL = """
import json, sys
import numpy as np
import torch
import threadpoolctl

torch.set_num_threads(1)
before = sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp")
import lowrank_kernels

# a stack the size rule runs on Numba's thread pool: the first parallel region launches it
lowrank_kernels.batched_qr(np.random.default_rng(0).standard_normal((64, 200, 16)))
import numba

after = [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
after = sorted(x for x in after if x[0] in dict(before))
counts = {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()}
print(json.dumps({**counts, "before": before, "after": after}))
"""


def test_first_parallel_kernel_keeps_torch_thread_count():
    """A user's ``torch.set_num_threads(1)`` survives the launch of Numba's thread pool by
    the kernels' first parallel region, as do the counts of the OpenMP runtimes loaded
    before it.  Guards against Numba's OpenMP layer calling ``omp_set_num_threads`` on the
    runtime PyTorch shares: with the guard removed, torch's libgomp reports 2 threads
    after the first kernel (and in a training loop with ``torch.set_num_threads(1)`` a
    second thread ran torch's operations from the first basis update on).  Run in a fresh
    interpreter: Numba launches its pool once per process."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", _FIRST_KERNEL], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["numba"] == 2  # the pool did launch, with two threads
    assert got["torch"] == 1
    assert got["after"] == got["before"]
