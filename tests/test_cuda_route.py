"""The CuPy route of ``lowrank_core._linalg`` and the CUDA kernels' scaling, under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, set by ``conftest.py``).

CuPy is not installed in CI, so the CuPy branch of ``_linalg._kernel_route`` is reached
with simulator device arrays (``numba.cuda.to_device``, the kind of CUDA array that the
CUDA kernels of ``lowrank_kernels`` take, given a tuple shape and a CUDA Array
Interface attribute like CuPy's, operators and a namespace, :class:`_DeviceNamespace`,
that compute with NumPy on the simulated device's buffers and keep results of that
type): ``array_api_compat.is_cupy_array`` is patched to say yes to them, and the
namespace's ``linalg.qr`` / ``linalg.svd`` record every call, the stand-in for
``cupy.linalg``.  The kernels
that run are the real numba-cuda kernels, executed by the simulator; a spy on
``lowrank_kernels._cuda`` records which of them ran.  So each test shows which path took
the factorization (``xp.linalg`` fallback or kernel) and what ``Counters`` recorded.

Tolerances: Householder QR and the SVD are backward stable with errors bounded by
``gamma_{cm} ~ c m u`` (Higham, *Accuracy and Stability*, Thm 19.4 / 19.13); the tests
use ``8 max(m, k) eps`` of the dtype for ``||Q^H Q - I||_max``, ``||A - Q R|| / ||A||``
and, relative to ``sigma_1`` (Weyl's inequality), for singular values, as
``tests/test_kernels.py`` does.  The scaling tests use the same bounds at scales where
unscaled squared norms overflow or underflow (float64 ``1e+-200``, ``1e+-300``, float32
``1e+-30``): a scaling by a power of two is exact, so the bounds do not move.

The simulator runs about one second per small kernel launch, so the shapes are tiny and
the CUDA kernels are launched about thirty times in the whole file (about 30 s).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import array_api_compat
import array_api_compat.numpy as xnp
import numpy as np
import pytest

import lowrank_kernels as lk
from lowrank_core import Counters, _linalg

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" or not lk.has_cuda(),
    reason="runs the CUDA kernels under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)",
)


_WRAPPED_OPS = (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
    "radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmod", "rpow", "rmatmul", "rand", "ror", "rxor",
    "eq", "ne", "lt", "le", "gt", "ge",
)  # fmt: skip


def _pretend_cupy_type() -> type:
    """A simulator device array dressed as a CuPy array.

    Kernels take it as the simulator's own device array (it is a subclass of one).  Like
    a CuPy array it has a plain tuple ``shape`` (the simulator's refuses negative
    indices, as inside a kernel), a ``__cuda_array_interface__`` attribute (what
    ``lowrank_kernels`` looks for to take the CUDA path; its ``data`` pointer is a host
    pointer here, which nothing dereferences), arithmetic operators and an array
    namespace, :class:`_DeviceNamespace`; every operation computes with NumPy on the
    wrapped buffer and returns this type again, so data never silently becomes a NumPy
    array (which would route to the CPU kernels).
    """
    from numba import cuda

    base = type(cuda.to_device(np.zeros(1)))

    class PretendCupyArray(base):
        __array_ufunc__ = None  # NumPy operands defer to our reflected operators

        @property
        def shape(self) -> tuple[int, ...]:
            return tuple(self._ary.shape)

        @property
        def __cuda_array_interface__(self) -> dict[str, Any]:
            iface = self._ary.__array_interface__
            return {"shape": iface["shape"], "typestr": iface["typestr"], "data": iface["data"], "version": 3}

        def __array_namespace__(self, api_version: str | None = None) -> Any:
            return _NAMESPACE[0]

        @property
        def T(self) -> Any:  # noqa: N802
            return _wrap(self._ary.T)

        def transpose(self, axes: Any = None) -> Any:
            return _wrap(np.transpose(self._ary, axes))

        def reshape(self, *args: Any, **kwargs: Any) -> Any:
            return _wrap(self._ary.reshape(*args, **kwargs))

        def ravel(self, *args: Any, **kwargs: Any) -> Any:
            return _wrap(self._ary.ravel(*args, **kwargs))

        def view(self, *args: Any, **kwargs: Any) -> Any:
            return _wrap(self._ary.view(*args, **kwargs))

        def __getattr__(self, name: str) -> Any:  # mT, real, imag, conj(), astype(), ...
            attr = getattr(self._ary, name)
            if callable(attr):
                return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
            return _wrap(attr)

        def __getitem__(self, key: Any) -> Any:
            return _wrap(self._ary[_unwrap(key)])

        def __setitem__(self, key: Any, value: Any) -> None:
            self._ary[_unwrap(key)] = _unwrap(value)

        def __neg__(self) -> Any:
            return _wrap(-self._ary)

        def __pos__(self) -> Any:
            return _wrap(+self._ary)

        def __abs__(self) -> Any:
            return _wrap(abs(self._ary))

        def __invert__(self) -> Any:
            return _wrap(~self._ary)

        def __bool__(self) -> bool:
            return bool(self._ary)

        def __float__(self) -> float:
            return float(self._ary)

        def __int__(self) -> int:
            return int(self._ary)

        def __complex__(self) -> complex:
            return complex(self._ary)

        def __index__(self) -> int:
            return self._ary.__index__()

        __hash__ = None

    def binary(name: str) -> Any:
        def op(self: Any, other: Any) -> Any:
            return _wrap(getattr(self._ary, f"__{name}__")(_unwrap(other)))

        return op

    for name in _WRAPPED_OPS:
        setattr(PretendCupyArray, f"__{name}__", binary(name))
    return PretendCupyArray


_PRETEND_CUPY: list[type] = []
_NAMESPACE: list[Any] = []


def _pretend() -> type:
    if not _PRETEND_CUPY:
        _PRETEND_CUPY.append(_pretend_cupy_type())
        _NAMESPACE.append(_DeviceNamespace())
    return _PRETEND_CUPY[0]


def _wrap(obj: Any) -> Any:
    """NumPy arrays (not 0-d ones, which stay scalars as CuPy's do not, harmlessly) as
    pretend CuPy arrays; tuples and named tuples elementwise."""
    if isinstance(obj, np.ndarray) and obj.ndim > 0:
        return _pretend()(obj)
    if isinstance(obj, tuple):
        items = [_wrap(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _unwrap(obj: Any) -> Any:
    if _PRETEND_CUPY and isinstance(obj, _PRETEND_CUPY[0]):
        return obj._ary
    if isinstance(obj, tuple):
        items = [_unwrap(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_unwrap(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _put(a: np.ndarray) -> Any:
    """``a`` as a pretend CuPy array (a copy on the simulated device)."""
    return _pretend()(np.array(a, order="C", copy=True))


def _host(x: Any) -> np.ndarray:
    """A NumPy copy of a pretend CuPy array or of a simulator device array."""
    if isinstance(x, np.ndarray):
        return x
    return x.copy_to_host() if hasattr(x, "copy_to_host") else np.asarray(x)


def _is_pretend_cupy(*xs: Any) -> bool:
    return all(isinstance(x, _pretend()) for x in xs)


class _DeviceLinalg:
    """``linalg`` of :class:`_DeviceNamespace`; the factorizations (``qr``, ``svd``) are
    recorded with the shape of their input: the stand-in for ``cupy.linalg``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        fn = getattr(xnp.linalg, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in ("qr", "svd"):
                self.calls.append((name, tuple(args[0].shape)))
            return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))

        return call


class _DeviceNamespace:
    """Array namespace of the pretend CuPy arrays: each function is NumPy's
    (array-api-compat) one on the wrapped buffers, its array results wrapped again."""

    def __init__(self) -> None:
        self.linalg = _DeviceLinalg()

    def __getattr__(self, name: str) -> Any:
        obj = getattr(xnp, name)
        if not callable(obj) or isinstance(obj, type):
            return obj
        return lambda *a, **k: _wrap(obj(*_unwrap(a), **_unwrap(k)))


@pytest.fixture
def cuda_route(monkeypatch):
    """Arrays made by :func:`_put` count as CuPy arrays; returns ``(namespace, kernel spy)``.

    Three patches: ``array_api_compat.is_cupy_array`` says yes to them;
    ``lowrank_kernels._cuda._library`` allocates the kernels' outputs as pretend CuPy
    arrays (as it allocates CuPy outputs for CuPy inputs); and a spy lists ``(kernel,
    shape)`` for every call of ``_cuda.batched_qr`` / ``_cuda.batched_svd`` (the public
    front end looks them up per call, and a wide SVD calls ``batched_svd`` again on
    ``A^H``).  The namespace's ``linalg.calls`` lists the fallbacks; it starts empty.
    """
    from lowrank_kernels import _cuda

    pretend = _pretend()
    xp = _NAMESPACE[0]
    xp.linalg.calls.clear()
    real_is_cupy = array_api_compat.is_cupy_array
    monkeypatch.setattr(array_api_compat, "is_cupy_array", lambda x: isinstance(x, pretend) or real_is_cupy(x))
    real_library = _cuda._library

    def library(a: Any) -> tuple[Any, Any]:
        alloc, stream = real_library(a)
        if isinstance(a, pretend):
            return (lambda shape, dt: pretend(np.empty(shape, dtype=dt))), stream
        return alloc, stream

    monkeypatch.setattr(_cuda, "_library", library)
    ran: list[tuple[str, tuple[int, ...]]] = []
    for name in ("batched_qr", "batched_svd"):
        real = getattr(_cuda, name)

        def spy(a, out=None, _real=real, _name=name):
            ran.append((_name, tuple(a.shape)))
            return _real(a, out=out)

        monkeypatch.setattr(_cuda, name, spy)
    return xp, ran


def _tol(m: int, k: int, dtype: Any) -> float:
    return 8 * max(m, k) * float(np.finfo(np.dtype(dtype)).eps)


def _random(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _unit(a: np.ndarray, *xs: np.ndarray) -> list[np.ndarray]:
    """``a`` and ``xs`` in float64/complex128, all multiplied by the power of two that
    brings ``max |a|`` into ``[0.5, 1)``: exact, so that the checks' own norms and
    products neither overflow nor underflow at extreme scales."""
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    big = float(np.max(np.abs(a))) if a.size else 0.0
    f = np.ldexp(1.0, -np.frexp(big)[1]) if big > 0 else 1.0
    return [x.astype(wide) * f for x in (a, *xs)]


def _check_qr(a: np.ndarray, q: np.ndarray, r: np.ndarray) -> None:
    *_, m, k = a.shape
    tol = _tol(m, k, a.dtype)
    assert np.all(np.isfinite(q))
    assert np.all(np.isfinite(r))
    assert np.all(np.tril(r, -1) == 0)
    d = np.diagonal(r, axis1=-2, axis2=-1)
    assert np.all(d.real >= 0)
    assert np.all(d.imag == 0)
    a, r = _unit(a, r)
    eye = np.eye(k)
    assert np.max(np.abs(np.conj(np.swapaxes(q, -1, -2)) @ q - eye)) <= tol
    resid = np.linalg.norm((q @ r - a).astype(np.complex128), axis=(-2, -1))
    assert np.all(resid <= tol * np.linalg.norm(a.astype(np.complex128), axis=(-2, -1)))


def _check_svd(a: np.ndarray, u: np.ndarray, s: np.ndarray, v: np.ndarray) -> None:
    *_, m, k = a.shape
    p = min(m, k)
    tol = _tol(m, k, a.dtype)
    assert u.shape == (*a.shape[:-2], m, p)
    assert s.shape == (*a.shape[:-2], p)
    assert v.shape == (*a.shape[:-2], k, p)
    assert np.all(np.diff(s, axis=-1) <= 0)
    a, s = _unit(a, s)
    s = s.real
    ref = np.linalg.svd(a, compute_uv=False)
    s1 = ref[..., :1]
    assert np.all(np.abs(s - ref) <= tol * s1)
    rec = (u.astype(a.dtype) * s[..., None, :]) @ np.conj(np.swapaxes(v, -1, -2))
    assert np.all(np.linalg.norm(rec - a, axis=(-2, -1)) <= tol * s1[..., 0])
    for f in (u, v):
        assert np.max(np.abs(np.conj(np.swapaxes(f, -1, -2)) @ f - np.eye(p))) <= tol


# ----------------------------------------------------------------------------- the rule
def test_one_rule_for_both_devices():
    """``kernel_fits`` is the rule ``_linalg`` asks: the CPU takes any size, the GPU one
    thread block (32 KiB), wide SVDs on both, wide QRs on neither.  A rule that said yes
    to the 76.8 KB matrix on the GPU would send the first CuPy augmentation QR into the
    kernel's ValueError.  Bad arguments are refused with the argument named (a shape
    given as one int used to fail inside ``tuple()`` with no name)."""
    big = (3, 600, 16)  # 600 * 16 * 8 = 76800 bytes per matrix
    assert lk.kernel_fits("qr", big, "float64")
    assert not lk.kernel_fits("qr", big, "float64", "cuda")
    assert "76800 bytes" in lk.kernel_fit_reason("qr", big, "float64", "cuda")
    assert lk.kernel_fits("qr", (3, 600, 16), "float32", "cuda") is False  # 38400 bytes
    assert lk.kernel_fits("qr", (3, 400, 16), "float32", "cuda")  # 25600 bytes
    for device in ("cpu", "cuda"):
        assert lk.kernel_fits("svd", (2, 6, 20), "complex128", device)
        assert not lk.kernel_fits("qr", (2, 6, 20), "float64", device)
        assert "m >= k" in lk.kernel_fit_reason("qr", (2, 6, 20), "float64", device)
        assert not lk.kernel_fits("qr", (2, 8, 4), "int64", device)
        assert not lk.kernel_fits("qr", (2, 8, 4), "float16", device)
    assert not lk.kernel_fits("svd", (2, 33, 40), "float32", "cuda")  # 5280 bytes but min(m, k) = 33
    assert lk.kernel_fits("svd", (2, 33, 40), "float32")
    assert lk.kernel_fits("qr", (2, 8, 4), "torch.float32")  # another library's dtype, by name
    with pytest.raises(ValueError, match="argument 'device'"):
        lk.kernel_fits("qr", (2, 8, 4), "float64", "gpu")
    with pytest.raises(ValueError, match="argument 'op'"):
        lk.kernel_fits("lu", (2, 8, 4), "float64")
    with pytest.raises(TypeError, match="argument 'shape'.*got 8"):
        lk.kernel_fits("qr", 8, "float64")
    with pytest.raises(TypeError, match="argument 'shape'"):
        lk.kernel_fit_reason("qr", (8, 4.0), "float64")
    with pytest.raises(ValueError, match="argument 'shape' must not have negative"):
        lk.kernel_fits("qr", (2, -8, 4), "float64", "cuda")


# ----------------------------------------------------------------------------- fallback
def test_qr_larger_than_one_block_falls_back_and_is_counted(cuda_route):
    """(1) A 3 x 600 x 16 float64 QR (76.8 KB per matrix, more than one block's 32 KiB)
    runs in ``xp.linalg`` under "auto", is counted, and no kernel runs; under "kernels"
    the ValueError names the size.  Removing the fit check from ``_kernel_route`` makes
    the "auto" call raise the kernel's "does not fit one thread block" error."""
    xp, ran = cuda_route
    a = _random((3, 600, 16), np.float64)
    c = Counters()
    q, r = _linalg.thin_qr(_put(a), xp, c)
    assert xp.linalg.calls == [("qr", (3, 600, 16))]
    assert _is_pretend_cupy(q, r)
    assert ran == []
    assert (c.qr, dict(c.qr_shapes), c.kernel_calls) == (3, {(600, 16): 3}, 0)
    assert c.qr_flops == 3 * _linalg.qr_flops(600, 16)
    _check_qr(a, _host(q), _host(r))
    with _linalg.use_linalg("kernels"), pytest.raises(ValueError, match=r"76800 bytes.*32768 bytes"):
        _linalg.thin_qr(_put(a), xp, c)
    assert ran == []
    assert c.qr == 6  # counted before routing, also when the forced path refuses


@pytest.mark.parametrize(
    ("shape", "dtype", "why"),
    [((2, 600, 16), np.float64, "bytes"), ((2, 33, 40), np.float32, "min\\(m, k\\) <= 32")],
)
def test_svd_that_does_not_fit_falls_back(cuda_route, shape, dtype, why):
    """SVDs over 32 KiB, and wide ones whose smaller side exceeds the Jacobi kernel's 32
    columns, run in ``xp.linalg`` and are counted; a rule that ignored ``min(m, k)`` for
    the wide case would hand the 33 x 40 stack to a kernel that cannot take it."""
    xp, ran = cuda_route
    a = _random(shape, dtype, seed=1)
    c = Counters()
    u, s, v = _linalg.thin_svd(_put(a), xp, c)
    assert xp.linalg.calls == [("svd", shape)]
    assert _is_pretend_cupy(u, s, v)
    assert ran == []
    assert (c.svd, dict(c.svd_shapes), c.kernel_calls) == (2, {shape[-2:]: 2}, 0)
    _check_svd(a, _host(u), _host(s), _host(v))
    with _linalg.use_linalg("kernels"), pytest.raises(ValueError, match=why):
        _linalg.thin_svd(_put(a), xp, c)


# ----------------------------------------------------------------------------- kernels
def test_wide_svd_runs_in_the_kernel(cuda_route):
    """(2) An SVD with m < k (2 x 4 x 9 complex128) fits and runs in the CUDA kernel
    (through the conjugate transpose) with ``U (4, 4)``, ``V (9, 4)``; one kernel call,
    two SVDs counted, no fallback.  The old kernel raised for m < k; a transpose that
    forgot the conjugate fails the reconstruction check."""
    xp, ran = cuda_route
    a = _random((2, 4, 9), np.complex128, seed=2)
    c = Counters()
    u, s, v = _linalg.thin_svd(_put(a), xp, c)
    # the call, then A^H (9 x 4) factored as a tall matrix: QR kernel, Jacobi on R
    assert ran == [("batched_svd", (2, 4, 9)), ("batched_svd", (2, 9, 4)), ("batched_qr", (2, 9, 4))]
    assert xp.linalg.calls == []
    assert _is_pretend_cupy(u, s, v)
    assert (c.svd, dict(c.svd_shapes), c.kernel_calls) == (2, {(4, 9): 2}, 1)
    assert c.svd_flops == 2 * _linalg.svd_flops(4, 9, complex_=True)
    _check_svd(a, _host(u), _host(s), _host(v))


def test_qr_that_fits_runs_in_the_kernel(cuda_route):
    """(3) A 2 x 12 x 4 float64 QR fits one block: the kernel runs, ``kernel_calls`` is 1,
    no fallback.  A rule that refused every CuPy array (or counted fallbacks as kernel
    calls) fails here."""
    xp, ran = cuda_route
    a = _random((2, 12, 4), np.float64, seed=3)
    c = Counters()
    q, r = _linalg.thin_qr(_put(a), xp, c)
    assert ran == [("batched_qr", (2, 12, 4))]
    assert xp.linalg.calls == []
    assert _is_pretend_cupy(q, r)
    assert (c.qr, dict(c.qr_shapes), c.kernel_calls) == (2, {(12, 4): 2}, 1)
    _check_qr(a, _host(q), _host(r))


def test_single_svd_preference_applies_to_cupy_too(cuda_route):
    """Under "auto" a single SVD goes to ``xp.linalg`` (``KERNEL_SVD_MIN_BATCH``, the
    CPU-measured preference, applies to CuPy as well); under "kernels" the same fitting
    matrix runs in the kernel.  Moving the preference after the CuPy branch, or letting it
    refuse a forced call, fails one of the two halves."""
    xp, ran = cuda_route
    a = _random((1, 5, 5), np.float64, seed=4)
    c = Counters()
    _linalg.thin_svd(_put(a), xp, c)
    assert xp.linalg.calls == [("svd", (1, 5, 5))]
    assert ran == []
    with _linalg.use_linalg("kernels"):
        u, s, v = _linalg.thin_svd(_put(a), xp, c)
    assert ran == [("batched_svd", (1, 5, 5))]
    assert (c.svd, c.kernel_calls) == (2, 1)
    _check_svd(a, _host(u), _host(s), _host(v))


def test_solve_end_to_end_on_a_pretend_cupy_state(cuda_route):
    """``lc.solve`` (abc-psi, two stacked 2100 x 6 problems of rank 1, two steps) on a
    pretend CuPy state: every ``m x 2r`` QR (2100 x 2 float64 = 33.6 KB, over one block)
    runs in ``xp.linalg``, every ``6 x 2`` SVD stack in the CUDA kernel, the state stays
    a (pretend) CuPy array, the stats match a ``linalg="xp"`` NumPy run but for
    ``kernel_calls``, and so does the solution.  Before the fit check the first QR raised
    the kernel's "does not fit one thread block" error.

    The two runs differ only in the rounding of backward-stable factorizations of
    2100-row blocks, carried through two steps of the contractive ``dY/dt = -Y``: hence
    ``8 m eps`` relative (m = 2100), the module's bound.
    """
    import lowrank_core as lc

    xp, ran = cuda_route
    Y0_np = lc.LowRank.from_dense(_random((2, 2100, 6), np.float64, seed=7), rank=1)
    Y0 = lc.LowRank(_put(Y0_np.U), _put(Y0_np.S), _put(Y0_np.V))
    problem = lc.MatrixODE(lambda t, Y: -Y)
    sol = lc.solve(problem, Y0, (0.0, 0.2), dt=0.1)
    ref = lc.solve(problem, Y0_np, (0.0, 0.2), dt=0.1, linalg="xp")
    assert _is_pretend_cupy(sol.Y.U, sol.Y.S, sol.Y.V)
    assert sol.stats["qr_shapes"] == ref.stats["qr_shapes"] == {(2100, 2): 4}
    assert sol.stats["svd_shapes"] == ref.stats["svd_shapes"] == {(6, 2): 4}
    assert xp.linalg.calls == [("qr", (2, 2100, 2))] * 2  # 2 steps x one stack of 2
    assert [call for call in ran if call[0] == "batched_svd"] == [("batched_svd", (2, 6, 2))] * 2
    assert (sol.stats["kernel_calls"], ref.stats["kernel_calls"]) == (2, 0)
    for key in ("steps", "rhs_evals", "qr", "svd", "qr_flops", "svd_flops"):
        assert sol.stats[key] == ref.stats[key], key
    got, want = _host(sol.Y.to_dense()), ref.Y.to_dense()
    assert np.linalg.norm(got - want) <= _tol(2100, 6, np.float64) * np.linalg.norm(want)


# ----------------------------------------------------------------------------- scaling
_SCALES = [
    ("float64", 1e200),
    ("float64", 1e-200),
    ("float64", 1e300),
    ("float64", 1e-300),
    ("float32", 1e30),
    ("float32", 1e-30),
    ("complex128", 1e-250),
]


@pytest.mark.parametrize(("dtype", "scale"), _SCALES)
def test_cuda_kernels_at_extreme_scales(dtype, scale):
    """QR and SVD (tall: the QR kernel, then Jacobi on ``R``) of a 2 x 9 x 4 stack scaled
    by ``scale`` meet the unit-scale bounds.  Without the power-of-two scaling the squared
    column norms overflow to inf (NaN factors) or underflow to 0 (singular values off by
    100 %, ``U`` not orthonormal) at these scales."""
    base = _random((2, 9, 4), dtype, seed=5)
    a = (base * np.asarray(scale, dtype=base.real.dtype)).astype(dtype)
    assert np.all(np.isfinite(a))
    assert np.all(np.abs(a[a != 0]) > np.finfo(dtype).tiny)
    q, r = lk.batched_qr(_put(a))
    _check_qr(a, _host(q), _host(r))
    u, s, v = lk.batched_svd(_put(a))
    _check_svd(a, _host(u), _host(s), _host(v))


def test_square_jacobi_at_extreme_scales():
    """The square path (Jacobi on the input, no QR first) scales too: 2 x 6 x 6 float64 at
    1e250 and float32 at 1e-33, against the unit-scale bounds."""
    for dtype, scale in (("float64", 1e250), ("float32", 1e-33)):
        a = (_random((2, 6, 6), np.float64, seed=6) * scale).astype(dtype)
        assert np.all(np.isfinite(a))
        assert np.all(np.abs(a) > np.finfo(dtype).tiny)
        u, s, v = lk.batched_svd(_put(a))
        _check_svd(a, _host(u), _host(s), _host(v))


def test_route_keeps_cpu_rules(monkeypatch):
    """The CPU half of the rule is unchanged: a single SVD stays on LAPACK under "auto",
    a stack takes the kernels, a wide QR falls back, and forcing it names the reason and
    what to do.  (The CUDA patching of the other tests is not active here;
    ``tests/test_linalg.py`` covers the complex128 small-QR preference.)"""
    spied: Counter = Counter()
    for name in ("batched_qr", "batched_svd"):
        real = getattr(lk, name)

        def spy(a, *args, _real=real, _name=name, **kwargs):
            spied[_name] += 1
            return _real(a, *args, **kwargs)

        monkeypatch.setattr(lk, name, spy)
    c = Counters()
    _linalg.thin_svd(_random((1, 6, 6), np.float64), xnp, c)
    _linalg.thin_svd(_random((2, 6, 6), np.float64), xnp, c)
    _linalg.thin_qr(_random((2, 4, 8), np.float64), xnp, c)
    assert (spied["batched_svd"], spied["batched_qr"], c.kernel_calls) == (1, 0, 1)
    assert (c.svd, c.qr, dict(c.qr_shapes)) == (3, 2, {(4, 8): 2})
    with _linalg.use_linalg("kernels"), pytest.raises(ValueError, match=r"m >= k, got m=4, k=8.*linalg='auto'"):
        _linalg.thin_qr(_random((2, 4, 8), np.float64), xnp, c)
    assert spied["batched_qr"] == 0
