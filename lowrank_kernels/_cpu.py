"""Numba CPU kernels: batched thin QR and small SVD.

Layout and conventions
----------------------
Every driver takes a C-contiguous stack ``a`` of shape ``(B, m, k)`` and writes into
preallocated outputs; nothing here allocates per matrix except per-chunk scratch.  The
batch is split into ``nchunks`` contiguous chunks (chosen by the caller from the number
of Numba threads, so the cached kernels read no dynamic globals) and each chunk runs on
one thread.  Inner loops run from 0 over 1-D views (no wrap-around checks, so LLVM
vectorises them) and the kernels use ``fastmath={'reassoc', 'contract'}`` only, so that
NaN checks such as ``not (x > 0)`` keep working.

Per-matrix algorithms (all dtypes: float32/64, complex64/128; "work precision" is
float64/complex128 for every input dtype, except where noted):

``_house_qr``
    Householder QR on a transposed copy (rows of the scratch are columns of ``A``, so
    every reflector update is a unit-stride dot + axpy), LAPACK ``larfg`` conventions,
    explicit thin ``Q`` by backward accumulation (``org2r``).  Norms are accumulated in
    float64 with rescaling on overflow / underflow.  Unconditionally stable.
``_cholqr2``
    CholeskyQR2 on the row-major input.  Real inputs: the Gram matrices and the products
    ``A R^{-1}`` are BLAS ``gemm`` calls in the input precision (``np.dot`` with ``out=``),
    the Cholesky factors and triangular inverses are float64; complex inputs: loops in
    complex128 (the choice is made at compile time by ``numba.extending.overload``).  It
    refuses (returns ``False``) when the first Cholesky breaks down (an overflowing
    Gram matrix stops it), when a column's squared norm is so small that the Gram
    matrix's products are subnormal (``_gram_floor``), when
    some column keeps less than ``1 / _CHOL_COND_MAX`` of its norm outside the span of
    the previous columns (``R1[j, j] < ||a_j|| / _CHOL_COND_MAX``: a column-scaling
    invariant lower bound on the condition number of ``A`` with unit columns, which is
    what governs CholeskyQR's accuracy), or when the second Gram
    matrix deviates from the identity by more than ``_CHOL_ORTH_MAX`` (an a-posteriori
    bound on the orthogonality of the first pass); the driver then runs ``_house_qr``
    on that matrix.  The fallback is therefore guaranteed, per matrix.  The second pass
    is skipped when the first already gives ``||Q1^H Q1 - I||_max <= k eps`` (it could
    not improve such a ``Q1``; the Gram matrix of ``Q1`` is formed either way, as the
    a-posteriori guard).
``qr_rows_parallel``
    The same CholeskyQR2 for one tall real matrix, with its row blocks on the threads.
``_jacobi_svd``
    One-sided (Hestenes) Jacobi on the columns of a ``k x k`` matrix in work precision,
    round-robin sweeps (disjoint pairs per round; the rotation parameters of a round are
    computed together), relative convergence test ``|a_p^H a_q| <= tol ||a_p|| ||a_q||``.
    Thin ``m x k`` inputs are first reduced by QR (``A = Q R``, SVD of ``R``, ``U = Q U_R``).
    Left singular vectors of zero singular values are completed to an orthonormal set.
    The work matrix is first scaled by a power of two so that its largest entry is of
    order one (``_scale_to_unit``; exact, undone on the singular values), so that no
    squared norm overflows or underflows at any representable input scale.
    If the sweeps do not converge the matrix is redone with LAPACK ``gesdd``.

Non-finite input: a matrix that contains NaN or Inf gets NaN in all of its outputs
(other matrices of the batch are unaffected).

Phases of singular pairs are canonical: the largest-magnitude entry of every column of
``U`` (the first one, on ties) is real positive.
"""

from __future__ import annotations

import math
import types

import numpy as np
from numba import njit, prange
from numba import types as nbtypes
from numba.extending import overload

_FM = {"reassoc", "contract"}
_SERIAL = {"cache": True, "fastmath": _FM, "nogil": True}
_PARALLEL = {"cache": True, "fastmath": _FM, "nogil": True, "parallel": True}

#: CholeskyQR2 gives up (and the Householder fallback runs) beyond these thresholds.
_CHOL_COND_MAX = 1.0e6
_CHOL_ORTH_MAX = 0.1
#: Squared column norms below ``_GRAM_FLOOR_FACTOR * m * tiny`` go to Householder
#: (``_gram_floor``): a margin of 2**10 over the size where subnormal products of the Gram
#: matrix start to cost relative accuracy.
_GRAM_FLOOR_FACTOR = 1024.0

#: Algorithm codes shared with the Python front end.
QR_HOUSEHOLDER = 0
QR_CHOLQR2 = 1
SVD_JACOBI = 0
SVD_LAPACK = 1

_JACOBI_MAX_SWEEPS = 60


# --------------------------------------------------------------------------- helpers
@njit(**_SERIAL)
def _abs2(z):
    return (z * np.conj(z)).real


@njit(**_SERIAL)
def _all_finite(x):
    """True when every entry of the 2-D array ``x`` is finite."""
    m, k = x.shape
    acc = 0.0
    for i in range(m):
        row = x[i]
        for j in range(k):
            v = row[j]
            # x - x is 0 for finite x and NaN for NaN/Inf (no 'nnan'/'ninf' fastmath flags).
            acc += (v.real - v.real) + (v.imag - v.imag)
    return acc == 0.0


@njit(**_SERIAL)
def _norm_tail(x):
    """2-norm of the 1-D view ``x`` in float64, rescaled if the plain sum over/underflows.

    Entries are promoted to work precision (``* 1.0``) before they are squared: squared
    float32 entries below about 1e-19 would otherwise be subnormal (or zero) in float32.
    """
    s = 0.0
    for t in range(x.size):
        s += _abs2(x[t] * 1.0)
    if s < 1.0e-280 or s > 1.0e280:
        scale = 0.0
        for t in range(x.size):
            scale = max(scale, abs(x[t]))
        if scale == 0.0 or not math.isfinite(scale):
            return scale
        s = 0.0
        for t in range(x.size):
            s += _abs2(x[t] * 1.0 / scale)
        return scale * math.sqrt(s)
    return math.sqrt(s)


@njit(**_SERIAL)
def _fill_nan(x):
    x.ravel()[:] = np.nan


# --------------------------------------------------------------------------- Householder
@njit(**_SERIAL)
def _house_qr(a, q, r, wt, qt, tau):
    """Householder QR of ``a`` (m, k) into ``q`` (m, k) and ``r`` (k, k).

    ``wt`` and ``qt`` are (k, m) scratch of the input dtype, ``tau`` a (k,) scratch.
    The diagonal of ``r`` is real and non-negative.
    """
    m, k = a.shape
    for i in range(m):
        row = a[i]
        for j in range(k):
            wt[j, i] = row[j]
    for j in range(k):
        x = wt[j, j:]
        tail = x[1:]
        alpha = x[0]
        xnorm = _norm_tail(tail)
        if xnorm == 0.0 and alpha.imag == 0.0:
            tau[j] = 0.0
            continue
        beta = -math.copysign(math.hypot(abs(alpha), xnorm), alpha.real)
        tau[j] = (beta - alpha) / beta
        scal = 1.0 / (alpha - beta)
        for t in range(tail.size):
            tail[t] = tail[t] * scal
        x[0] = beta
        ctau = np.conj(tau[j])
        i = j + 1
        while i + 1 < k:  # two trailing columns per pass over the reflector
            w0 = wt[i, j:]
            w1 = wt[i + 1, j:]
            t0 = w0[1:]
            t1 = w1[1:]
            s0 = w0[0]
            s1 = w1[0]
            for t in range(tail.size):
                cv = np.conj(tail[t])
                s0 += cv * t0[t]
                s1 += cv * t1[t]
            s0 = s0 * ctau
            s1 = s1 * ctau
            w0[0] -= s0
            w1[0] -= s1
            for t in range(tail.size):
                t0[t] -= s0 * tail[t]
                t1[t] -= s1 * tail[t]
            i += 2
        if i < k:
            w = wt[i, j:]
            wtail = w[1:]
            s = w[0]
            for t in range(wtail.size):
                s += np.conj(tail[t]) * wtail[t]
            s = s * ctau
            w[0] -= s
            for t in range(wtail.size):
                wtail[t] -= s * tail[t]
    # explicit thin Q (transposed), backward accumulation
    qt[:, :] = 0.0
    for j in range(k - 1, -1, -1):
        tail = wt[j, j + 1 :]
        tj = tau[j]
        for c in range(j + 1, k):
            qc = qt[c, j:]
            qtail = qc[1:]
            s = qc[0]  # exactly 0 here (H_j+1.. do not touch row j); gives s the input dtype
            for t in range(qtail.size):
                s += np.conj(tail[t]) * qtail[t]
            s = s * tj
            qc[0] = -s
            for t in range(qtail.size):
                qtail[t] -= s * tail[t]
        qj = qt[j, j:]
        qj[0] = 1.0 - tj
        qjt = qj[1:]
        for t in range(qjt.size):
            qjt[t] = -tj * tail[t]
    # R from the upper triangle, diagonal made real non-negative
    r[:, :] = 0.0
    for j in range(k):
        d = wt[j, j]
        ad = abs(d)
        ph = d / ad if ad > 0.0 else d * 0.0 + 1.0
        cph = np.conj(ph)
        for c in range(j, k):
            r[j, c] = cph * wt[c, j]
        qj = qt[j]
        for t in range(m):
            qj[t] = qj[t] * ph
    for i in range(m):
        row = q[i]
        for j in range(k):
            row[j] = qt[j, i]


# --------------------------------------------------------------------------- CholeskyQR2
@njit(**_SERIAL)
def _gram_rows(a, g):
    """``g = a^H a`` (full square) in the precision of ``g``, four rows at a time.

    Index loops start at 0 and run over the full width (no per-row views, whose
    creation cost dominated for short rows); ``* 1.0`` promotes float32/complex64
    entries to work precision before the products.
    """
    m, k = a.shape
    g[:, :] = 0.0
    i = 0
    while i + 4 <= m:
        for p in range(k):
            c0 = np.conj(a[i, p]) * 1.0
            c1 = np.conj(a[i + 1, p]) * 1.0
            c2 = np.conj(a[i + 2, p]) * 1.0
            c3 = np.conj(a[i + 3, p]) * 1.0
            for t in range(k):
                g[p, t] += c0 * a[i, t] + c1 * a[i + 1, t] + c2 * a[i + 2, t] + c3 * a[i + 3, t]
        i += 4
    while i < m:
        for p in range(k):
            c0 = np.conj(a[i, p]) * 1.0
            for t in range(k):
                g[p, t] += c0 * a[i, t]
        i += 1


@njit(**_SERIAL)
def _chol_upper(g, rr):
    """Upper Cholesky ``g = rr^H rr``; returns ``(ok, min_j rr[j, j]^2 / g[j, j])``.

    The second value is the smallest fraction of a column's squared norm that lies
    outside the span of the previous columns: invariant under column scaling, and its
    inverse square root is a lower bound on the condition number of the matrix with
    unit columns.

    Row-oriented: row ``j`` of ``rr`` is ``g[j] - sum_{i<j} conj(rr[i, j]) rr[i]``,
    scaled, so that every inner loop is a full-length, unit-stride axpy (vectorised);
    the entries left of the diagonal are cleared afterwards.  Two-dimensional indexing
    rather than row views: 3-22 % faster for real k = 4 ... 32 in a micro-benchmark,
    bit-identical results.
    """
    k = g.shape[0]
    worst = np.inf
    for j in range(k):
        for c in range(k):
            rr[j, c] = g[j, c]
        for i in range(j):
            f = np.conj(rr[i, j])
            for c in range(k):
                rr[j, c] -= f * rr[i, c]
        s = rr[j, j].real
        if not (s > 0.0) or not math.isfinite(s):
            return False, 0.0
        d = math.sqrt(s)
        worst = min(worst, s / g[j, j].real)
        inv = 1.0 / d
        for c in range(k):
            rr[j, c] = rr[j, c] * inv
        for c in range(j):
            rr[j, c] = 0.0
        rr[j, j] = d
    return True, worst


@njit(**_SERIAL)
def _tri_inv_upper(rr, ri):
    """Inverse of the upper-triangular ``rr`` into ``ri``, row by row from the bottom:
    ``ri[i] = (e_i - sum_{l>i} rr[i, l] ri[l]) / rr[i, i]`` (unit-stride axpys)."""
    k = rr.shape[0]
    for ii in range(k):
        i = k - 1 - ii
        for c in range(k):
            ri[i, c] = 0.0
        ri[i, i] = 1.0
        for ll in range(i + 1, k):
            f = rr[i, ll]
            for c in range(k):
                ri[i, c] -= f * ri[ll, c]
        inv = 1.0 / rr[i, i]
        for c in range(k):
            ri[i, c] = ri[i, c] * inv


@njit(**_SERIAL)
def _times_upper(a, ri, out, acc):
    """``out = a @ ri`` (``ri`` upper triangular, stored full) in work precision.

    Four rows at a time into the (4, k) work-precision accumulator ``acc``; ``out`` may
    be ``a`` itself (each block of rows is read completely before it is written).
    """
    m, k = a.shape
    i = 0
    while i < m:
        nr = min(4, m - i)
        acc[:, :] = 0.0
        for ll in range(k):
            for s in range(nr):
                al = a[i + s, ll] * 1.0
                for t in range(k):
                    acc[s, t] += al * ri[ll, t]
        for s in range(nr):
            for t in range(k):
                out[i + s, t] = acc[s, t]
        i += 4


@njit(**_SERIAL)
def _upper_product(r2, r1, r):
    """``r = r2 @ r1`` for upper-triangular ``r1``, ``r2`` (row ``i`` as unit-stride
    axpys of the rows ``l >= i`` of ``r1``)."""
    k = r.shape[0]
    for i in range(k):
        row = r[i]
        row[:] = 0.0
        for ll in range(i, k):
            f = r2[i, ll]
            src = r1[ll]
            for c in range(k):
                row[c] += f * src[c]


@njit(**_SERIAL)
def _orth_deviation(g):
    """``||g - I||_max`` for the Gram matrix ``g`` of a candidate orthonormal basis."""
    k = g.shape[0]
    dev = 0.0
    for i in range(k):
        for j in range(k):
            dev = max(dev, abs(g[i, j] - (1.0 if i == j else 0.0)))
    return dev


@njit(**_SERIAL)
def _first_pass_factors(g, r1, ri, gmin):
    """``R1 = chol(g)`` of the first Gram matrix and ``ri = R1^{-1}``; ``False`` on
    breakdown, when the conditioning guard refuses, or when a column's squared norm
    ``g[j, j]`` is below ``gmin`` (see ``_gram_floor``)."""
    for j in range(g.shape[0]):
        if not (g[j, j].real >= gmin):
            return False
    ok, worst = _chol_upper(g, r1)
    if not (ok and worst * _CHOL_COND_MAX**2 >= 1.0):
        return False
    _tri_inv_upper(r1, ri)
    return True


@njit(**_SERIAL)
def _gram_floor(a):
    """Smallest squared column norm for which the Gram matrix of ``a`` (m, k), formed in
    the input precision, is trusted: ``_GRAM_FLOOR_FACTOR * m * tiny``.

    Products ``a_ij a_il`` below ``tiny`` (the smallest normal number) are subnormal and
    carry an absolute error up to about ``tiny * eps``; summed over ``m`` rows, that is a
    relative error of ``m tiny eps / g_jj`` in the Gram matrix, so columns whose squared
    norm is not well above ``m tiny`` (float32 entries below about 1e-18, float64 below
    about 1e-152) are left to the Householder fallback, whose norms are rescaled.  An
    overflowing Gram matrix needs no such floor: its infinite diagonal stops the Cholesky.
    """
    return _GRAM_FLOOR_FACTOR * a.shape[0] * np.finfo(a.dtype).tiny


@njit(**_SERIAL)
def _after_first_pass(g, r1, r2, ri, r, accept):
    """What to do once ``g`` is the Gram matrix of ``Q1``: ``-1`` refuse (a-posteriori
    guard or breakdown), ``0`` accept ``Q1`` (``||g - I||_max <= accept``; ``r = R1``),
    ``1`` run the second pass (``r2 = chol(g)``, ``ri = r2^{-1}``, ``r = R2 R1``, formed
    in work precision in ``g`` and rounded once)."""
    dev = _orth_deviation(g)
    if not (dev <= _CHOL_ORTH_MAX):
        return -1
    if dev <= accept:
        _copy_cast(r1, r)
        return 0
    ok, _ = _chol_upper(g, r2)
    if not ok:
        return -1
    _tri_inv_upper(r2, ri)
    _upper_product(r2, r1, g)
    _copy_cast(g, r)
    return 1


@njit(**_SERIAL)
def _copy_cast(src, dst):
    """``dst = src`` for square ``k x k`` matrices, cast to ``dst``'s dtype."""
    k = src.shape[0]
    for i in range(k):
        for j in range(k):
            dst[i, j] = src[i, j]


def _gram_into(src, g, gs):
    """``g = src^H src`` in work precision (``gs``: scratch of the input dtype)."""
    msg = "compiled only; see the overload below"
    raise NotImplementedError(msg)


@overload(_gram_into, jit_options=_SERIAL)
def _gram_into_impl(src, g, gs):
    if isinstance(src.dtype, nbtypes.Complex):
        return lambda src, g, gs: _gram_rows(src, g)

    def gemm(src, g, gs):
        # One BLAS gemm in the input precision (sgemm for float32: its rounding is what
        # the guards of ``_cholqr2`` bound), copied into the work-precision matrix.
        np.dot(src.T, src, gs)
        _copy_cast(gs, g)

    return gemm


def _times_inverse(src, ri, out, riw, acc):
    """``out = src @ ri`` for the upper-triangular inverse ``ri`` (``out`` is not ``src``)."""
    msg = "compiled only; see the overload below"
    raise NotImplementedError(msg)


@overload(_times_inverse, jit_options=_SERIAL)
def _times_inverse_impl(src, ri, out, riw, acc):
    if isinstance(src.dtype, nbtypes.Complex):
        return lambda src, ri, out, riw, acc: _times_upper(src, ri, out, acc)

    def gemm(src, ri, out, riw, acc):
        _copy_cast(ri, riw)
        np.dot(src, riw, out)

    return gemm


@njit(**_SERIAL)
def _cholqr2(a, q, r, g, r1, r2, ri, acc, gs, riw, q1):
    """CholeskyQR2 of ``a`` into ``q``, ``r``; ``False`` if it must not be trusted.

    Real inputs: Gram matrices and ``Q = A R^{-1}`` by BLAS ``gemm`` in the input
    precision (``R^{-1}`` from the work-precision Cholesky, rounded once); complex
    inputs: loops in work precision.  The first pass writes ``Q1 = A R1^{-1}`` into
    ``q``.  The Gram matrix of ``Q1`` is formed in any case (it is the a-posteriori
    guard); when ``||Q1^H Q1 - I||_max <= k eps`` (eps of the input dtype) ``Q1`` is
    already orthonormal to working accuracy, a second pass could not improve it, and
    ``(Q1, R1)`` is returned.  Otherwise the second pass runs, through the scratch ``q1``.
    """
    _gram_into(a, g, gs)
    if not _first_pass_factors(g, r1, ri, _gram_floor(a)):
        return False
    _times_inverse(a, ri, q, riw, acc)
    _gram_into(q, g, gs)
    step = _after_first_pass(g, r1, r2, ri, r, a.shape[1] * np.finfo(a.dtype).eps)
    if step <= 0:
        return step == 0
    _times_inverse(q, ri, q1, riw, acc)
    q[:, :] = q1
    return True


# --------------------------------------------------------------------------- batch QR
def _qr_batch(a, q, r, algo, nchunks, wproto):
    """Thin QR of every matrix of ``a`` (B, m, k); returns the number of fallbacks."""
    nb, m, k = a.shape
    fallbacks = np.zeros(nchunks, dtype=np.int64)
    for c in prange(nchunks):
        lo = (c * nb) // nchunks
        hi = ((c + 1) * nb) // nchunks
        wt = np.empty((k, m), dtype=a.dtype)
        qt = np.empty((k, m), dtype=a.dtype)
        tau = np.empty(k, dtype=a.dtype)
        g = np.empty((k, k), dtype=wproto.dtype)
        r1 = np.empty((k, k), dtype=wproto.dtype)
        r2 = np.empty((k, k), dtype=wproto.dtype)
        ri = np.empty((k, k), dtype=wproto.dtype)
        acc = np.empty((4, k), dtype=wproto.dtype)
        chol = algo == QR_CHOLQR2
        gs = np.empty((k if chol else 0, k), dtype=a.dtype)
        riw = np.empty((k if chol else 0, k), dtype=a.dtype)
        q1 = np.empty((m if chol else 0, k), dtype=a.dtype)
        for b in range(lo, hi):
            ab = a[b]
            # A success of CholeskyQR2 implies finite input (a NaN or Inf reaches the
            # diagonal of the Gram matrix and stops the Cholesky), so the finiteness
            # pass is only needed before Householder.
            if chol and _cholqr2(ab, q[b], r[b], g, r1, r2, ri, acc, gs, riw, q1):
                continue
            if not _all_finite(ab):
                _fill_nan(q[b])
                _fill_nan(r[b])
                continue
            fallbacks[c] += chol
            _house_qr(ab, q[b], r[b], wt, qt, tau)
    return fallbacks.sum()


@njit(**_PARALLEL)
def _gram_row_blocks(src, parts, g):
    """``g = src^T src`` (work precision) from one ``gemm`` per row block, in parallel."""
    m, k = src.shape
    nblocks = parts.shape[0]
    for c in prange(nblocks):
        blk = src[(c * m) // nblocks : ((c + 1) * m) // nblocks]
        np.dot(blk.T, blk, parts[c])
    g[:, :] = 0.0
    for c in range(nblocks):
        for i in range(k):
            for j in range(k):
                g[i, j] += parts[c, i, j]


@njit(**_PARALLEL)
def _times_row_blocks(src, ri, riw, dst, nblocks):
    """``dst = src @ ri`` (``ri`` rounded once into ``riw``), one ``gemm`` per row block."""
    m = src.shape[0]
    _copy_cast(ri, riw)
    for c in prange(nblocks):
        lo = (c * m) // nblocks
        hi = ((c + 1) * m) // nblocks
        np.dot(src[lo:hi], riw, dst[lo:hi])


@njit(**_SERIAL)
def qr_rows_parallel(a, q, r, nblocks):
    """CholeskyQR2 of one real tall matrix ``a`` (m, k) with its rows split in ``nblocks``.

    The ``gemm`` products (partial Gram matrices of the row blocks, summed in work
    precision, and the blocks of ``A R^{-1}``) run on the threads; the small Cholesky
    factorizations and inverses run once.  Same passes, early acceptance and guards as
    ``_cholqr2``; returns ``False`` when a guard refuses (the caller then runs
    Householder on the matrix).
    """
    m, k = a.shape
    parts = np.empty((nblocks, k, k), dtype=a.dtype)
    g = np.empty((k, k))
    r1 = np.empty((k, k))
    r2 = np.empty((k, k))
    ri = np.empty((k, k))
    riw = np.empty((k, k), dtype=a.dtype)
    _gram_row_blocks(a, parts, g)
    if not _first_pass_factors(g, r1, ri, _gram_floor(a)):
        return False
    _times_row_blocks(a, ri, riw, q, nblocks)
    _gram_row_blocks(q, parts, g)
    step = _after_first_pass(g, r1, r2, ri, r, k * np.finfo(a.dtype).eps)
    if step <= 0:
        return step == 0
    q1 = np.empty((m, k), dtype=a.dtype)
    _times_row_blocks(q, ri, riw, q1, nblocks)
    q[:, :] = q1
    return True


def _renamed(fn, suffix):
    """A copy of ``fn`` with its own ``__qualname__``.

    Numba's on-disk cache is keyed by the function's qualified name and signature, not by
    the ``parallel`` flag: two dispatchers of one function would share cache entries and
    the serial build would be loaded for the parallel driver (or the reverse).
    """
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__doc__ = fn.__doc__
    return clone


# The same driver twice: parallel over chunks, and serial for small work, where waking
# the thread pool costs more than the factorizations (each compiles only when used).
qr_batch = njit(**_PARALLEL)(_renamed(_qr_batch, "_parallel"))
qr_batch_serial = njit(**_SERIAL)(_renamed(_qr_batch, "_serial"))


# --------------------------------------------------------------------------- Jacobi SVD
@njit(**_SERIAL)
def _round_robin(k, sched):
    """Round-robin (circle method) schedule of all pairs ``p < q`` of ``k`` columns:
    ``sched`` (n - 1, n // 2, 2) with ``n = k + k % 2``; each round's pairs are disjoint,
    and pairs with the dummy column of an odd ``k`` are ``(-1, -1)``."""
    n = k + (k % 2)
    for rnd in range(n - 1):
        for i in range(n // 2):
            if i == 0:
                a = 0
                b = rnd % (n - 1) + 1
            else:
                a = (rnd + i) % (n - 1) + 1
                b = (rnd + n - 1 - i) % (n - 1) + 1
            if a < k and b < k:
                sched[rnd, i, 0] = min(a, b)
                sched[rnd, i, 1] = max(a, b)
            else:
                sched[rnd, i, 0] = -1
                sched[rnd, i, 1] = -1


@njit(**_SERIAL)
def _jacobi_svd(w, vt, nrm, tol, sched, gam, al, be, cf):
    """One-sided Jacobi on the rows of ``w`` (k, k): ``w`` holds the columns of A.

    On exit the rows of ``w`` are mutually orthogonal (they are the columns of ``A V``)
    and ``vt[j]`` is column ``j`` of ``V``.  Sweeps follow the round-robin schedule
    ``sched`` (see ``_round_robin``): the pairs of a round are disjoint, so their dot
    products are formed first, then all their rotation parameters in one branch-free
    loop (vectorised across pairs, which takes the sqrt/divide latency chain of one
    rotation off the critical path), then the rotations.  The squared column norms
    ``nrm`` are updated analytically after each rotation (``alpha - t|gamma|``,
    ``beta + t|gamma|``) and recomputed at the start of every sweep.  Convergence test:
    ``|a_p^H a_q| <= tol ||a_p|| ||a_q||`` for every pair.  Scratch: ``gam`` (n // 2,
    dtype of ``w``), ``al``, ``be`` (n // 2,), ``cf`` (3, n // 2).  Returns ``True``
    when converged.
    """
    k = w.shape[0]
    nrounds, half, _ = sched.shape
    vt[:, :] = 0.0
    for j in range(k):
        vt[j, j] = 1.0
    for _sweep in range(_JACOBI_MAX_SWEEPS):
        for j in range(k):
            acc = 0.0
            wj = w[j]
            for t in range(k):
                acc += _abs2(wj[t])
            nrm[j] = acc
        rotated = False
        for rnd in range(nrounds):
            for i in range(half):
                p = sched[rnd, i, 0]
                if p < 0:
                    gam[i] = 0.0
                    al[i] = 1.0
                    be[i] = 1.0
                    continue
                wp = w[p]
                wq = w[sched[rnd, i, 1]]
                g = wp[0] * 0.0
                for t in range(k):
                    g += np.conj(wp[t]) * wq[t]
                gam[i] = g
                al[i] = nrm[p]
                be[i] = nrm[sched[rnd, i, 1]]
            for i in range(half):
                ag = abs(gam[i])
                do = ag > tol * math.sqrt(al[i] * be[i])
                zeta = (be[i] - al[i]) / (2.0 * (ag if do else 1.0))
                tt = math.copysign(1.0, zeta) / (abs(zeta) + math.sqrt(1.0 + zeta * zeta))
                tt = tt if do else 0.0
                cf[0, i] = 1.0 / math.sqrt(1.0 + tt * tt)
                cf[1, i] = tt
                cf[2, i] = tt * ag
            for i in range(half):
                if cf[1, i] == 0.0:
                    continue
                rotated = True
                p = sched[rnd, i, 0]
                qq = sched[rnd, i, 1]
                cs = cf[0, i]
                sn = cs * cf[1, i]
                g = gam[i]
                cph = np.conj(g / abs(g))
                nrm[p] = al[i] - cf[2, i]
                nrm[qq] = be[i] + cf[2, i]
                for xp, xq in ((w[p], w[qq]), (vt[p], vt[qq])):
                    for t in range(k):
                        x = xp[t]
                        y = cph * xq[t]
                        xp[t] = cs * x - sn * y
                        xq[t] = sn * x + cs * y
        if not rotated:
            return True
    return False


@njit(**_SERIAL)
def _complete_orthonormal(ut, good):
    """Replace rows ``j`` of ``ut`` with ``good[j] == False`` by unit vectors orthogonal
    to all other rows (``ut`` is (k, m) with orthonormal good rows)."""
    k, m = ut.shape
    cand = 0
    for j in range(k):
        if good[j]:
            continue
        while cand < m:
            x = ut[j]
            x[:] = 0.0
            x[cand] = 1.0
            cand += 1
            for _rep in range(2):
                for i in range(k):
                    if not good[i]:
                        continue
                    ui = ut[i]
                    s = x[0] * 0.0
                    for t in range(m):
                        s += np.conj(ui[t]) * x[t]
                    for t in range(m):
                        x[t] -= s * ui[t]
            nrm = _norm_tail(x)
            if nrm > 0.5:
                for t in range(m):
                    x[t] = x[t] / nrm
                good[j] = True
                break


@njit(**_SERIAL)
def _scale_to_unit(w):
    """Scale the work matrix ``w`` by a power of two so that its largest entry lies in
    ``[0.5, 4)``; returns the exponent ``e`` with ``w_in = 2**e w_out``.

    The Jacobi sweeps square column norms and multiply two of them (``al * be``), so
    unscaled entries beyond about 1e77 or below 1e-77 (float64 work precision) would
    overflow or underflow; after this scaling every squared norm is at most ``4 k^2``.
    Multiplying by a power of two is exact (up to entries that were already below the
    unit roundoff of the largest one), singular vectors are scale-invariant, and the
    singular values are scaled back by ``ldexp(s, e)``.  The exponent is clamped to
    ``[-1021, 1022]`` so that the factor ``2**-e`` is itself a normal number.
    """
    big = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        for j in range(w.shape[1]):
            big = max(big, abs(wi[j]))
    if big == 0.0 or not math.isfinite(big):
        return 0
    _, e = math.frexp(big)
    e = min(max(e, -1021), 1022)
    f = math.ldexp(1.0, -e)
    for i in range(w.shape[0]):
        wi = w[i]
        for j in range(w.shape[1]):
            wi[j] = wi[j] * f
    return e


@njit(**_SERIAL)
def _load_transposed(src, w):
    """``w[j, i] = src[i, j]`` for a square ``src`` (columns become rows)."""
    k = src.shape[0]
    for i in range(k):
        si = src[i]
        for j in range(k):
            w[j, i] = si[j]


def _basis_times(qbasis, ut, u, uc):
    """``u = qbasis @ ut^T`` (``ut`` in work precision; ``uc``: scratch of ``u``'s dtype)."""
    msg = "compiled only; see the overload below"
    raise NotImplementedError(msg)


@overload(_basis_times, jit_options=_SERIAL)
def _basis_times_impl(qbasis, ut, u, uc):
    if isinstance(qbasis.dtype, nbtypes.Complex):

        def loops(qbasis, ut, u, uc):
            m, k = u.shape
            for i in range(m):
                qi = qbasis[i]
                ui = u[i]
                for jj in range(k):
                    acc = ut[jj, 0] * 0.0
                    for t in range(k):
                        acc += qi[t] * ut[jj, t]
                    ui[jj] = acc

        return loops

    def gemm(qbasis, ut, u, uc):
        # One BLAS gemm in the input precision, U_R rounded to it once.
        k = ut.shape[0]
        for i in range(k):
            for j in range(k):
                uc[i, j] = ut[j, i]
        np.dot(qbasis, uc, u)

    return gemm


@njit(**_SERIAL)
def _svd_finish(w, vt, u, s, v, ut_scratch, good, qbasis, uc):
    """Turn converged Jacobi rows into sorted ``u``, ``s``, ``v`` outputs.

    ``qbasis`` (m, k) is the Q of a QR preconditioning (then ``U = Q U_R``, with the
    scratch ``uc`` (k, k) of the input dtype) or has size 0.
    """
    k = w.shape[0]
    sig = np.empty(k)
    for j in range(k):
        sig[j] = _norm_tail(w[j])
    order = np.argsort(-sig)
    smax = sig[order[0]] if k > 0 else 0.0
    tiny = 1.0e-290
    for jj in range(k):
        j = order[jj]
        s[jj] = sig[j]
        urow = ut_scratch[jj]
        wj = w[j]
        if sig[j] > tiny and sig[j] > smax * 1.0e-300:
            inv = 1.0 / sig[j]
            for t in range(k):
                urow[t] = wj[t] * inv
            good[jj] = True
        else:
            good[jj] = False
        vj = vt[j]
        for t in range(k):
            v[t, jj] = vj[t]
    _complete_orthonormal(ut_scratch, good)
    if qbasis.shape[0] == 0:
        for i in range(k):
            ui = u[i]
            for jj in range(k):
                ui[jj] = ut_scratch[jj, i]
    else:
        _basis_times(qbasis, ut_scratch, u, uc)


@njit(**_SERIAL)
def _canonical_phases(u, v):
    """Scale each singular pair so that the largest-magnitude entry of ``u[:, j]`` (the
    first one, on ties) is real positive: ``u[:, j] *= conj(ph)``, ``v[:, j] *= conj(ph)``."""
    m, p = u.shape
    for j in range(p):
        best = 0
        big = -1.0
        for i in range(m):
            a = abs(u[i, j])
            if a > big:
                big = a
                best = i
        piv = u[best, j]
        if big > 0.0:
            cph = np.conj(piv / big)
            for i in range(m):
                u[i, j] = u[i, j] * cph
            for i in range(v.shape[0]):
                v[i, j] = v[i, j] * cph


@njit(**_SERIAL)
def _lapack_svd_one(a, u, s, v):
    uu, ss, vh = np.linalg.svd(np.ascontiguousarray(a), full_matrices=False)
    kk = ss.size
    for j in range(kk):
        s[j] = ss[j]
    u[:, :] = uu
    for i in range(vh.shape[1]):
        for j in range(kk):
            v[i, j] = np.conj(vh[j, i])


def _svd_batch(a, u, s, v, algo, nchunks, wproto, tol):
    """Thin SVD of every matrix of ``a`` (B, m, k), ``m >= k``; returns LAPACK redo count."""
    nb, m, k = a.shape
    redo = np.zeros(nchunks, dtype=np.int64)
    for c in prange(nchunks):
        lo = (c * nb) // nchunks
        hi = ((c + 1) * nb) // nchunks
        pre = m > k
        qb = np.empty((m if pre else 0, k), dtype=a.dtype)
        rb = np.empty((k, k), dtype=a.dtype)
        wt = np.empty((k, m), dtype=a.dtype)
        qt = np.empty((k, m), dtype=a.dtype)
        tau = np.empty(k, dtype=a.dtype)
        w = np.empty((k, k), dtype=wproto.dtype)
        vt = np.empty((k, k), dtype=wproto.dtype)
        ut = np.empty((k, k), dtype=wproto.dtype)
        uc = np.empty((k, k), dtype=a.dtype)
        good = np.empty(k, dtype=np.bool_)
        nrm = np.empty(k)
        n2 = k + (k % 2)
        sched = np.empty((max(n2 - 1, 0), n2 // 2, 2), dtype=np.int64)
        _round_robin(k, sched)
        gam = np.empty(n2 // 2, dtype=wproto.dtype)
        al = np.empty(n2 // 2)
        be = np.empty(n2 // 2)
        cf = np.empty((3, n2 // 2))
        for b in range(lo, hi):
            ab = a[b]
            if not _all_finite(ab):
                _fill_nan(u[b])
                _fill_nan(s[b])
                _fill_nan(v[b])
                continue
            if algo == SVD_LAPACK:
                _lapack_svd_one(ab, u[b], s[b], v[b])
                _canonical_phases(u[b], v[b])
                continue
            if pre:
                _house_qr(ab, qb, rb, wt, qt, tau)
                _load_transposed(rb, w)
            else:
                _load_transposed(ab, w)
            e = _scale_to_unit(w)
            if _jacobi_svd(w, vt, nrm, tol, sched, gam, al, be, cf):
                _svd_finish(w, vt, u[b], s[b], v[b], ut, good, qb, uc)
                sb = s[b]
                for j in range(k):
                    sb[j] = math.ldexp(sb[j], e)
            else:
                redo[c] += 1
                _lapack_svd_one(ab, u[b], s[b], v[b])
            _canonical_phases(u[b], v[b])
    return redo.sum()


svd_batch = njit(**_PARALLEL)(_renamed(_svd_batch, "_parallel"))
svd_batch_serial = njit(**_SERIAL)(_renamed(_svd_batch, "_serial"))


def _lift_batch(q, c, u, v, nchunks):
    """``u[b] = q[b] @ c[b]`` (one ``gemm`` each) with the canonical phases of ``u[b]``,
    ``v[b]``: the left singular vectors of a QR-preconditioned thin SVD."""
    nb = q.shape[0]
    for ch in prange(nchunks):
        for b in range((ch * nb) // nchunks, ((ch + 1) * nb) // nchunks):
            np.dot(q[b], c[b], u[b])
            _canonical_phases(u[b], v[b])


lift_batch = njit(**_PARALLEL)(_renamed(_lift_batch, "_parallel"))
lift_batch_serial = njit(**_SERIAL)(_renamed(_lift_batch, "_serial"))


# --------------------------------------------------------------------------- products
@njit(**_PARALLEL)
def matmul_batch(a, b, c, ta, tb, nchunks):
    """``c[i] = op_a(a[i]) @ op_b(b[i])`` over the batch, one ``gemm`` per matrix, the
    batch split into ``nchunks`` chunks across the threads; ``op`` is the transpose when
    the flag (``ta``, ``tb``) is set (passed to the BLAS, no copy)."""
    nb = c.shape[0]
    for ch in prange(nchunks):
        for i in range((ch * nb) // nchunks, ((ch + 1) * nb) // nchunks):
            if ta and tb:
                np.dot(a[i].T, b[i].T, c[i])
            elif ta:
                np.dot(a[i].T, b[i], c[i])
            elif tb:
                np.dot(a[i], b[i].T, c[i])
            else:
                np.dot(a[i], b[i], c[i])
