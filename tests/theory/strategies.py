"""Hypothesis strategies of the theory suite: states, spectra, generators, step sizes, tolerances.

Everything is drawn as plain numbers and NumPy data (seeds, shapes, spectra) and moved to
the backend under test only inside the test (style.md lesson 10), so one drawn example is
the same matrix on every backend.

* :func:`spectra` -- singular values of a rank-``r`` matrix: *separated* (ratio of
  neighbours at most 0.8, all in ``[0.1, 1]``), *graded* (``q^-j`` with ``q`` in
  ``[1.5, 10]``) or *nearly rank deficient* (separated, then ``sigma_r = 10^-k``,
  ``k`` in ``6..12``).
* :func:`lowrank_cases` -- a :class:`LowRankCase`: shape, rank, dtype, leading batch
  dimensions, spectrum and seed; :meth:`LowRankCase.factors` gives general factors
  ``U (P Σ Q^H) V^H`` (the core is *not* diagonal, so bugs that only show for a general
  core are visible).
* :func:`skew_generators` -- random skew-symmetric (skew-Hermitian for complex) matrices
  with a drawn spectral norm.
* :func:`step_sizes`, :func:`ranks`, :func:`tolerances`.
* :func:`scaled` -- settings for expensive properties: a fixed fraction of the active
  profile's ``max_examples``, so ``--hypothesis-profile=thorough`` scales them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from .._helpers import lowrank_in, random_orthonormal, random_skew

#: dtypes of the real and of the complex problems (c128 only where a problem is complex)
REAL_DTYPES = ("float32", "float64")
ALL_DTYPES = ("float32", "float64", "complex128")
SPECTRUM_KINDS = ("separated", "graded", "nearly_deficient")
BATCHES = ((), (2,), (1, 2))


def scaled(fraction: float, minimum: int = 2) -> settings:
    """Settings with ``fraction`` of the active profile's examples (at least ``minimum``).

    The profile is loaded before the test modules are imported (conftest at import,
    ``--hypothesis-profile`` in ``pytest_configure``), so this follows ``ci`` and
    ``thorough`` alike.
    """
    return settings(max_examples=max(minimum, int(settings.default.max_examples * fraction)))


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats ``10^x`` with ``x`` uniform in ``[log10 lo, log10 hi]``."""
    return st.floats(float(np.log10(lo)), float(np.log10(hi))).map(lambda x: float(10.0**x))


def step_sizes(lo: float = 1e-3, hi: float = 0.5) -> st.SearchStrategy[float]:
    return log_uniform(lo, hi)


def tolerances(lo: float = 1e-10, hi: float = 1e-2) -> st.SearchStrategy[float]:
    return log_uniform(lo, hi)


def ranks(lo: int = 1, hi: int = 6) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


@st.composite
def spectra(draw: Any, r: int, kinds: tuple[str, ...] = SPECTRUM_KINDS) -> np.ndarray:
    """Descending singular values ``sigma_1 = 1 >= ... >= sigma_r > 0`` of one of ``kinds``."""
    kind = draw(st.sampled_from(kinds))
    if kind == "graded":
        q = draw(st.floats(1.5, 10.0))
        return q ** -np.arange(r, dtype=float)
    # separated: each ratio sigma_{j+1}/sigma_j in [0.3, 0.8] but never below 0.1 overall
    ratios = [draw(st.floats(0.3, 0.8)) for _ in range(r - 1)]
    sigma = np.maximum(np.cumprod([1.0, *ratios]), 0.1 * 0.8 ** np.arange(r))
    sigma = np.sort(sigma)[::-1]
    if kind == "nearly_deficient" and r > 1:
        sigma[-1] = 10.0 ** -draw(st.integers(6, 12))
    return sigma


@dataclass(frozen=True)
class LowRankCase:
    """A drawn rank-``r`` state: shapes, dtype, batch, spectrum and a seed for the bases."""

    m: int
    n: int
    r: int
    dtype: str
    batch: tuple[int, ...]
    sigma: np.ndarray
    seed: int

    @property
    def complex_(self) -> bool:
        return self.dtype.startswith("complex")

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def factors(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NumPy ``U (*batch, m, r)``, ``S (*batch, r, r)``, ``V (*batch, n, r)``, ``S = P diag(sigma) Q^H``."""
        rng = self.rng() if rng is None else rng
        count = int(np.prod(self.batch, dtype=int))
        Us, Ss, Vs = [], [], []
        for _ in range(count):
            P, Q = (random_orthonormal(rng, self.r, self.r, self.complex_) for _ in range(2))
            Us.append(random_orthonormal(rng, self.m, self.r, self.complex_))
            Vs.append(random_orthonormal(rng, self.n, self.r, self.complex_))
            Ss.append((P * self.sigma) @ Q.conj().T)
        return tuple(np.stack(x).reshape(*self.batch, *x[0].shape) for x in (Us, Ss, Vs))

    def state(self, xp: Any, factors: tuple[np.ndarray, ...] | None = None) -> Any:
        """The state as a :class:`LowRank` in namespace ``xp`` with this case's dtype."""
        return lowrank_in(xp, self.factors() if factors is None else factors, getattr(xp, self.dtype))

    def eps(self) -> float:
        return float(np.finfo(np.dtype(self.dtype)).eps)


@st.composite
def lowrank_cases(
    draw: Any,
    *,
    dtypes: tuple[str, ...] = ALL_DTYPES,
    kinds: tuple[str, ...] = SPECTRUM_KINDS,
    batches: tuple[tuple[int, ...], ...] = BATCHES,
    size: tuple[int, int] = (4, 14),
    max_rank: int = 6,
) -> LowRankCase:
    """A :class:`LowRankCase` with ``r <= min(m, n) // 2`` (so an augmented ``2r`` basis fits)."""
    m = draw(st.integers(*size))
    n = draw(st.integers(*size))
    r = draw(st.integers(1, max(1, min(max_rank, min(m, n) // 2))))
    return LowRankCase(
        m=m,
        n=n,
        r=r,
        dtype=draw(st.sampled_from(dtypes)),
        batch=draw(st.sampled_from(batches)),
        sigma=draw(spectra(r, kinds)),
        seed=draw(st.integers(0, 2**16)),
    )


@st.composite
def skew_generators(draw: Any, n: int, *, complex_: bool = False, norm: tuple[float, float] = (0.1, 5.0)) -> np.ndarray:
    """Random skew-symmetric (skew-Hermitian if ``complex_``) ``n x n`` matrix with a drawn spectral norm."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return random_skew(rng, n, draw(st.floats(*norm)), complex_=complex_)
