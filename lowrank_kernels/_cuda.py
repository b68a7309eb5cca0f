"""numba-cuda kernels: batched thin QR and small SVD, one thread block per matrix.

Inputs are CUDA arrays (CuPy arrays, numba device arrays, anything with the CUDA Array
Interface); they are read in place (no host round trip, no copy) and the outputs are
allocated by the same library (CuPy in, CuPy out) and written by the kernels on CuPy's
current stream.  The kernels also run under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which is how CI without a GPU tests them.

Design (one block per matrix; shapes are compile-time constants of a kernel factory
because shared arrays need static sizes; one compiled kernel per (m, k, dtype)):

* QR: the matrix lives in shared memory (``m * k * itemsize <= MAX_SHARED_BYTES``);
  Householder reflectors with a shared-memory tree reduction for the column norm,
  thread-per-column dot products and all threads on the rank-1 updates; explicit thin
  ``Q`` accumulated backwards in global memory; diagonal of ``R`` made real
  non-negative.
* SVD of square cores (``k <= MAX_SVD_K``): parallel one-sided Jacobi with round-robin
  ordering, ``ceil(k/2)`` threads each rotating one pair of columns per round; columns
  sorted by norm at the end.  Thin inputs are reduced by the QR kernel first and
  ``U = Q U_R`` is formed by a small batched-matmul kernel.
* Wide SVD inputs (``m < k``) are conjugate-transposed by a small kernel into a
  ``(k, m)`` scratch array (the one copy these kernels make), factored as above, and
  ``U`` and ``V`` swapped, as on the CPU.
* Scaling: each matrix is multiplied by a power of two ``2**-e`` (exact) that brings its
  largest entry into ``[0.5, 1)`` before it is factored, and ``R`` / ``s`` are
  multiplied back by ``2**e``; ``Q``, ``U`` and ``V`` do not depend on the scale.  Squared
  column norms and the rotation tests therefore neither overflow nor underflow for
  entries anywhere in the dtype's range (``e`` is clamped to ``[-1020, 1020]`` so that
  both factors are normal float64 numbers).  The extra cost is one max-reduction and one
  pass over the matrix in shared memory.
* No warp shuffles (the simulator lacks them); reductions go through shared memory.

Which matrices the kernels take is :func:`misfit` / :func:`fits` (the CUDA half of
:func:`lowrank_kernels.kernel_fits`).  A matrix that contains NaN/Inf gets NaN outputs,
as on the CPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64, from_dtype, int32  # module level: the simulator swaps ``cuda`` here

__all__ = ["MAX_SHARED_BYTES", "MAX_SVD_K", "batched_qr", "batched_svd", "fits", "misfit"]

#: Largest matrix (bytes) that one block keeps in shared memory.
MAX_SHARED_BYTES = 32 * 1024
#: Largest square core of the Jacobi kernel.
MAX_SVD_K = 32
_THREADS = 64
_JACOBI_MAX_SWEEPS = 40

_KERNELS: dict[tuple[Any, ...], Any] = {}


_DTYPE_NAMES = ("float32", "float64", "complex64", "complex128")
#: Clamp of the scaling exponent: ``2**1020`` and ``2**-1020`` are normal float64 numbers.
_MAX_SCALE_EXP = 1020


@cuda.jit(device=True)
def _power_of_two_scale(big, pow2):
    """Write ``2**-e`` and ``2**e`` to ``pow2[0]``, ``pow2[1]``, where ``2**e`` is the
    smallest power of two above ``big`` (the largest entry's magnitude; ``e = 0`` for a
    zero matrix), clamped to ``|e| <= _MAX_SCALE_EXP``: ``big * 2**-e`` lies in
    ``[0.5, 1)``, and multiplying by either factor is exact."""
    e = 0
    if big > 0.0:
        e = math.frexp(big)[1]
    e = min(max(e, -_MAX_SCALE_EXP), _MAX_SCALE_EXP)
    pow2[0] = math.ldexp(1.0, -e)
    pow2[1] = math.ldexp(1.0, e)


def misfit(op: str, m: int, k: int, dtype: Any) -> str | None:
    """Why the CUDA kernels do not take an ``(m, k)`` matrix of ``dtype`` for ``op``.

    Parameters
    ----------
    op : {"qr", "svd"}
        The factorization.
    m, k : int
        Rows and columns of each matrix of the stack (the batch size does not matter:
        one thread block per matrix).
    dtype : numpy dtype or dtype name
        Element type of the stack.

    Returns
    -------
    str or None
        ``None`` when the kernels take the matrix; otherwise the reason, a phrase that
        completes "cannot run ...: <reason>".  The rule: a float32, float64, complex64 or
        complex128 matrix of at most ``MAX_SHARED_BYTES`` bytes (it lives in one block's
        shared memory); thin QR needs ``m >= k``; SVD needs ``min(m, k) <= MAX_SVD_K``
        (the Jacobi kernel's largest core) and takes ``m < k`` through the conjugate
        transpose.

    Raises
    ------
    ValueError
        If ``op`` is neither ``"qr"`` nor ``"svd"``.
    """
    if op not in ("qr", "svd"):
        msg = f"misfit: argument 'op' must be 'qr' or 'svd', got {op!r}."
        raise ValueError(msg)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPE_NAMES:
        return f"the CUDA kernels take float32/float64/complex64/complex128, not {dtype}"
    if op == "qr" and m < k:
        return f"the thin QR kernel needs m >= k, got m={m}, k={k}"
    nbytes = m * k * dt.itemsize
    if nbytes > MAX_SHARED_BYTES:
        return (
            f"a ({m}, {k}) {dt.name} matrix is {nbytes} bytes, more than the {MAX_SHARED_BYTES} bytes "
            "that one thread block of the CUDA kernels keeps in shared memory"
        )
    if op == "svd" and min(m, k) > MAX_SVD_K:
        return f"the CUDA Jacobi SVD takes min(m, k) <= {MAX_SVD_K}, got {min(m, k)}"
    return None


def fits(op: str, m: int, k: int, dtype: Any) -> bool:
    """Whether the CUDA kernels take an ``(m, k)`` matrix of ``dtype`` for ``op``
    (:func:`misfit` is ``None``)."""
    return misfit(op, m, k, dtype) is None


def _qr_kernel(m: int, k: int, dtype: np.dtype) -> Any:
    key = ("qr", m, k, dtype)
    if key in _KERNELS:
        return _KERNELS[key]
    nbt = from_dtype(dtype)
    M, K, T = m, k, _THREADS
    nan = math.nan

    @cuda.jit
    def kernel(a, q, r):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        A = cuda.shared.array((M, K), dtype=nbt)
        tau = cuda.shared.array(K, dtype=nbt)
        sv = cuda.shared.array(K, dtype=nbt)
        scal = cuda.shared.array(1, dtype=nbt)
        red = cuda.shared.array(T, dtype=float64)
        pow2 = cuda.shared.array(2, dtype=float64)  # scaling 2**-e and unscaling 2**e
        flag = cuda.shared.array(1, dtype=int32)
        if tid == 0:
            flag[0] = 0
        cuda.syncthreads()
        mx = 0.0
        for idx in range(tid, M * K, T):
            i = idx // K
            j = idx % K
            v = a[b, i, j]
            A[i, j] = v
            if (v.real - v.real) + (v.imag - v.imag) != 0.0:
                flag[0] = 1
            mx = max(mx, abs(v.real), abs(v.imag))
        red[tid] = mx
        cuda.syncthreads()
        if flag[0] != 0:
            for idx in range(tid, M * K, T):
                q[b, idx // K, idx % K] = nan
            for idx in range(tid, K * K, T):
                r[b, idx // K, idx % K] = nan
            return
        # scale by a power of two (exact) so that the squared norms below neither
        # overflow nor underflow; R is scaled back at the end, Q does not change
        s = T // 2
        while s > 0:
            if tid < s:
                red[tid] = max(red[tid], red[tid + s])
            cuda.syncthreads()
            s //= 2
        if tid == 0:
            _power_of_two_scale(red[0], pow2)
        cuda.syncthreads()
        down = pow2[0]
        if down != 1.0:
            for idx in range(tid, M * K, T):
                i = idx // K
                j = idx % K
                A[i, j] = A[i, j] * down
            cuda.syncthreads()
        for j in range(K):
            acc = 0.0
            for i in range(j + 1 + tid, M, T):
                v = A[i, j]
                acc += v.real * v.real + v.imag * v.imag
            red[tid] = acc
            cuda.syncthreads()
            s = T // 2
            while s > 0:
                if tid < s:
                    red[tid] += red[tid + s]
                cuda.syncthreads()
                s //= 2
            if tid == 0:
                alpha = A[j, j]
                xn2 = red[0]
                if xn2 == 0.0 and alpha.imag == 0.0:
                    tau[j] = 0.0
                    scal[0] = 1.0
                else:
                    a2 = alpha.real * alpha.real + alpha.imag * alpha.imag
                    beta = -math.copysign(math.sqrt(a2 + xn2), alpha.real)
                    tau[j] = (beta - alpha) / beta
                    scal[0] = 1.0 / (alpha - beta)
                    A[j, j] = beta
            cuda.syncthreads()
            sc = scal[0]
            for i in range(j + 1 + tid, M, T):
                A[i, j] = A[i, j] * sc
            cuda.syncthreads()
            for c in range(j + 1 + tid, K, T):
                d = A[j, c]
                for i in range(j + 1, M):
                    d += A[i, j].conjugate() * A[i, c]
                sv[c] = d * tau[j].conjugate()
            cuda.syncthreads()
            nc = K - j - 1
            if nc > 0:
                for idx in range(tid, (M - j) * nc, T):
                    ii = j + idx // nc
                    c = j + 1 + idx % nc
                    if ii == j:
                        A[j, c] = A[j, c] - sv[c]
                    else:
                        A[ii, c] = A[ii, c] - sv[c] * A[ii, j]
            cuda.syncthreads()
        # explicit thin Q, backward accumulation, in global memory
        for idx in range(tid, M * K, T):
            q[b, idx // K, idx % K] = 0.0
        cuda.syncthreads()
        for j in range(K - 1, -1, -1):
            for c in range(j + 1 + tid, K, T):
                d = q[b, j, c] * 0.0
                for i in range(j + 1, M):
                    d += A[i, j].conjugate() * q[b, i, c]
                sv[c] = d * tau[j]
            cuda.syncthreads()
            nc = K - j
            for idx in range(tid, (M - j) * nc, T):
                ii = j + idx // nc
                c = j + idx % nc
                if c == j:
                    q[b, ii, j] = (1.0 - tau[j]) if ii == j else -tau[j] * A[ii, j]
                elif ii == j:
                    q[b, j, c] = -sv[c]
                else:
                    q[b, ii, c] = q[b, ii, c] - sv[c] * A[ii, j]
            cuda.syncthreads()
        # real non-negative diagonal of R, and R scaled back
        up = pow2[1]
        for idx in range(tid, K * K, T):
            i = idx // K
            c = idx % K
            d = A[i, i]
            ad = abs(d)
            ph = d / ad if ad > 0.0 else d * 0.0 + 1.0
            r[b, i, c] = (ph.conjugate() * A[i, c]) * up if c >= i else A[i, c] * 0.0
        for idx in range(tid, M * K, T):
            i = idx // K
            c = idx % K
            d = A[c, c]
            ad = abs(d)
            ph = d / ad if ad > 0.0 else d * 0.0 + 1.0
            q[b, i, c] = q[b, i, c] * ph

    _KERNELS[key] = kernel
    return kernel


def _jacobi_kernel(k: int, dtype: np.dtype, rdtype: np.dtype) -> Any:
    key = ("jacobi", k, dtype)
    if key in _KERNELS:
        return _KERNELS[key]
    nbt = from_dtype(dtype)
    K = k
    KP = k + (k % 2)  # even number of columns (a zero column pads odd k)
    NT = KP // 2
    tol = math.sqrt(k) * float(np.finfo(rdtype).eps)
    maxs = _JACOBI_MAX_SWEEPS
    nan = math.nan

    @cuda.jit
    def kernel(a, u, s, v):
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        W = cuda.shared.array((KP, KP), dtype=nbt)
        Vt = cuda.shared.array((KP, KP), dtype=nbt)
        sig = cuda.shared.array(KP, dtype=float64)
        order = cuda.shared.array(KP, dtype=int32)
        pow2 = cuda.shared.array(2, dtype=float64)  # scaling 2**-e and unscaling 2**e
        flag = cuda.shared.array(1, dtype=int32)
        if tid == 0:
            flag[0] = 0
        cuda.syncthreads()
        mx = 0.0
        for idx in range(tid, KP * KP, NT):
            j = idx // KP
            i = idx % KP
            x = a[b, i, j] if (i < K and j < K) else a[b, 0, 0] * 0.0
            W[j, i] = x
            Vt[j, i] = 1.0 if i == j else 0.0
            if (x.real - x.real) + (x.imag - x.imag) != 0.0:
                flag[0] = 1
            mx = max(mx, abs(x.real), abs(x.imag))
        sig[tid] = mx  # NT <= KP: sig is free until the singular values are formed
        cuda.syncthreads()
        if flag[0] != 0:
            for idx in range(tid, K * K, NT):
                u[b, idx // K, idx % K] = nan
                v[b, idx // K, idx % K] = nan
            for j in range(tid, K, NT):
                s[b, j] = nan
            return
        # scale by a power of two (exact) so that the squared column norms and the
        # rotation tests neither overflow nor underflow; s is scaled back at the end
        if tid == 0:
            big = 0.0
            for t in range(NT):
                big = max(big, sig[t])
            _power_of_two_scale(big, pow2)
        cuda.syncthreads()
        down = pow2[0]
        if down != 1.0:
            for idx in range(tid, KP * KP, NT):
                j = idx // KP
                i = idx % KP
                W[j, i] = W[j, i] * down
        cuda.syncthreads()
        for _sweep in range(maxs):
            if tid == 0:
                flag[0] = 0
            cuda.syncthreads()
            for rd in range(KP - 1):
                # round-robin (circle) pairing: player KP-1 fixed, the others rotate
                p = (rd + tid) % (KP - 1)
                qq = (rd - tid + KP - 1) % (KP - 1) if tid > 0 else KP - 1
                if p > qq:
                    p, qq = qq, p
                al = 0.0
                be = 0.0
                ga = W[p, 0] * 0.0
                for t in range(KP):
                    x = W[p, t]
                    y = W[qq, t]
                    al += x.real * x.real + x.imag * x.imag
                    be += y.real * y.real + y.imag * y.imag
                    ga += x.conjugate() * y
                ag = abs(ga)
                if ag > tol * math.sqrt(al) * math.sqrt(be) and ag > 0.0:
                    flag[0] = 1
                    zeta = (be - al) / (2.0 * ag)
                    tt = math.copysign(1.0, zeta) / (abs(zeta) + math.sqrt(1.0 + zeta * zeta))
                    cs = 1.0 / math.sqrt(1.0 + tt * tt)
                    sn = cs * tt
                    cph = (ga / ag).conjugate()
                    for t in range(KP):
                        x = W[p, t]
                        y = cph * W[qq, t]
                        W[p, t] = cs * x - sn * y
                        W[qq, t] = sn * x + cs * y
                        x = Vt[p, t]
                        y = cph * Vt[qq, t]
                        Vt[p, t] = cs * x - sn * y
                        Vt[qq, t] = sn * x + cs * y
                cuda.syncthreads()
            if flag[0] == 0:
                break
            cuda.syncthreads()
        for j in range(tid, KP, NT):
            acc = 0.0
            for t in range(KP):
                x = W[j, t]
                acc += x.real * x.real + x.imag * x.imag
            sig[j] = math.sqrt(acc)
        cuda.syncthreads()
        if tid == 0:
            for j in range(K):
                order[j] = j
            for i in range(K):  # selection sort, descending (K <= 32)
                best = i
                for j in range(i + 1, K):
                    if sig[order[j]] > sig[order[best]]:
                        best = j
                tmp = order[i]
                order[i] = order[best]
                order[best] = tmp
        cuda.syncthreads()
        for idx in range(tid, K * K, NT):
            i = idx // K
            jj = idx % K
            j = order[jj]
            sj = sig[j]
            u[b, i, jj] = W[j, i] / sj if sj > 0.0 else W[j, i] * 0.0
            v[b, i, jj] = Vt[j, i]
        up = pow2[1]
        for jj in range(tid, K, NT):
            s[b, jj] = sig[order[jj]] * up
        cuda.syncthreads()
        if tid == 0:
            # complete U for zero singular values (serial; rare)
            cand = 0
            for jj in range(K):
                if sig[order[jj]] > 0.0:
                    continue
                while cand < K:
                    for t in range(K):
                        u[b, t, jj] = 1.0 if t == cand else 0.0
                    cand += 1
                    for _rep in range(2):
                        for ii in range(K):
                            if ii == jj or (sig[order[ii]] <= 0.0 and ii > jj):
                                continue
                            d = u[b, 0, jj] * 0.0
                            for t in range(K):
                                d += u[b, t, ii].conjugate() * u[b, t, jj]
                            for t in range(K):
                                u[b, t, jj] = u[b, t, jj] - d * u[b, t, ii]
                    nrm = 0.0
                    for t in range(K):
                        x = u[b, t, jj]
                        nrm += x.real * x.real + x.imag * x.imag
                    nrm = math.sqrt(nrm)
                    if nrm > 0.5:
                        for t in range(K):
                            u[b, t, jj] = u[b, t, jj] / nrm
                        break

    _KERNELS[key] = kernel
    return kernel


def _matmul_kernel(m: int, k: int, dtype: np.dtype) -> Any:
    key = ("matmul", m, k, dtype)
    if key in _KERNELS:
        return _KERNELS[key]
    M, K, T = m, k, _THREADS

    @cuda.jit
    def kernel(x, y, out):
        b = cuda.blockIdx.x
        for idx in range(cuda.threadIdx.x, M * K, T):
            i = idx // K
            j = idx % K
            acc = x[b, i, 0] * 0.0
            for t in range(K):
                acc += x[b, i, t] * y[b, t, j]
            out[b, i, j] = acc

    _KERNELS[key] = kernel
    return kernel


def _conj_transpose_kernel(m: int, k: int, dtype: np.dtype) -> Any:
    key = ("conj_transpose", m, k, dtype)
    if key in _KERNELS:
        return _KERNELS[key]
    M, K, T = m, k, _THREADS

    @cuda.jit
    def kernel(x, out):
        b = cuda.blockIdx.x
        for idx in range(cuda.threadIdx.x, M * K, T):
            i = idx // K
            j = idx % K
            out[b, j, i] = x[b, i, j].conjugate()

    _KERNELS[key] = kernel
    return kernel


def _library(a: Any) -> tuple[Any, Any]:
    """(allocator, stream) matching the input: CuPy arrays get CuPy outputs on CuPy's
    current stream; anything else numba device arrays on the default stream."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)
        return (lambda shape, dt: cupy.empty(shape, dtype=dt)), stream
    return (lambda shape, dt: cuda.device_array(shape, dtype=dt)), 0


def _as_3d(a: Any, m: int, k: int) -> tuple[Any, int]:
    nb = math.prod(a.shape[:-2])
    return a.reshape((nb, m, k)), nb


def _check_fits(fn: str, op: str, m: int, k: int, dtype: np.dtype) -> None:
    reason = misfit(op, m, k, dtype)
    if reason is not None:
        msg = (
            f"{fn}: argument 'a' holds ({m}, {k}) {dtype} matrices, which do not fit one thread block "
            f"of the CUDA kernels: {reason}; use cupy.linalg for them."
        )
        raise ValueError(msg)


def _check_contiguous(fn: str, a: Any) -> Any:
    flags = getattr(a, "flags", None)
    contiguous = getattr(flags, "c_contiguous", None) if flags is not None else None
    if contiguous is None and isinstance(flags, dict):
        contiguous = flags.get("C_CONTIGUOUS")
    if contiguous is False:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy.ascontiguousarray(a)
        msg = f"{fn}: argument 'a' must be C-contiguous on the device."
        raise ValueError(msg)
    return a


def batched_qr(a: Any, out: Any = None) -> tuple[Any, Any]:
    """Thin QR of a CUDA array ``(..., m, k)``; see :func:`lowrank_kernels.batched_qr`."""
    fn = "batched_qr"
    if out is not None:
        msg = f"{fn}: 'out' is supported for NumPy arrays only."
        raise ValueError(msg)
    a = _check_contiguous(fn, a)
    dtype = np.dtype(a.dtype)
    *batch, m, k = a.shape
    _check_fits(fn, "qr", m, k, dtype)
    alloc, stream = _library(a)
    q = alloc(tuple(a.shape), dtype)
    r = alloc((*batch, k, k), dtype)
    nb = math.prod(batch)
    if nb == 0 or k == 0:
        return q, r
    a3, _ = _as_3d(a, m, k)
    _qr_kernel(m, k, dtype)[nb, _THREADS, stream](a3, q.reshape((nb, m, k)), r.reshape((nb, k, k)))
    return q, r


def batched_svd(a: Any, out: Any = None) -> tuple[Any, Any, Any]:
    """Thin SVD of a CUDA array ``(..., m, k)``; see :func:`lowrank_kernels.batched_svd`.

    Wide inputs (``m < k``) are conjugate-transposed on the device into a ``(..., k, m)``
    scratch array and factored there: ``A^H = U' s V'^H`` gives ``U = V'``, ``V = U'``.
    """
    fn = "batched_svd"
    if out is not None:
        msg = f"{fn}: 'out' is supported for NumPy arrays only."
        raise ValueError(msg)
    a = _check_contiguous(fn, a)
    dtype = np.dtype(a.dtype)
    *batch, m, k = a.shape
    _check_fits(fn, "svd", m, k, dtype)
    if m < k:
        alloc, stream = _library(a)
        at = alloc((*batch, k, m), dtype)
        nb = math.prod(batch)
        if nb > 0 and m > 0:
            a3, _ = _as_3d(a, m, k)
            _conj_transpose_kernel(m, k, dtype)[nb, _THREADS, stream](a3, at.reshape((nb, k, m)))
        ut, s, vt = batched_svd(at)
        return vt, s, ut
    rdtype = np.dtype(np.float32) if dtype in (np.float32, np.complex64) else np.dtype(np.float64)
    alloc, stream = _library(a)
    u = alloc(tuple(a.shape), dtype)
    s = alloc((*batch, k), rdtype)
    v = alloc((*batch, k, k), dtype)
    nb = math.prod(batch)
    if nb == 0 or k == 0:
        return u, s, v
    a3, _ = _as_3d(a, m, k)
    jac = _jacobi_kernel(k, dtype, rdtype)
    nt = (k + 1) // 2
    if m == k:
        jac[nb, nt, stream](a3, u.reshape((nb, k, k)), s.reshape((nb, k)), v.reshape((nb, k, k)))
        return u, s, v
    q, r = batched_qr(a3)
    ur = alloc((nb, k, k), dtype)
    jac[nb, nt, stream](r, ur, s.reshape((nb, k)), v.reshape((nb, k, k)))
    _matmul_kernel(m, k, dtype)[nb, _THREADS, stream](q, ur, u.reshape((nb, m, k)))
    return u, s, v
