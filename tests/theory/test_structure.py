"""Structure preservation (methods.md §4.4): norm and energy (Schrödinger), symmetry (Lyapunov, Riccati).

Norm and energy.  Hypotheses: the discrete Schrödinger problem ``F(Y) = -i H[Y]`` with
``H[Y] = D Y + Y D^T + Vc Y Vc^T`` self-adjoint, ``||H|| <= ||D|| + ||D|| + ||Vc||^2 <= 8``
(drawn size, rank, seed and step), RK4 substeps.  Every substep flow of KSL and Strang, the
Galerkin S-flow of RA-BUG and the L-flow of abc-PSI is linear with a skew-Hermitian
operator of norm ``<= ||H||``, so it conserves ``||Y||_F`` and ``E(Y) = Re<Y, H[Y]>``; RK4
changes both by at most the factor ``1 - |R(iy)| <= y^6 / 72`` (``|R(iy)|^2 = 1 - y^6/72 +
y^8/576``, ``y = h ||H||``) per substep.  The augmented methods represent ``Y0`` exactly in
the augmented basis and then truncate by ``delta <= theta``.  Hence, per step,

* KSL (3 substeps), Strang (5): ``|Δ||Y||| <= s y^6/72 ||Y||``, ``|ΔE| <= s y^6/72 ||H|| ||Y||^2``;
* RA-BUG, abc-PSI: the same plus ``theta`` for the norm and ``2 ||H|| ||Y|| theta +
  ||H|| theta^2`` for the energy;

each with ``20 N eps`` relative round-off.  Fixed-rank BUG (``M S0 N^H`` loses mass) and
BC-PSI (``P_{U1} Y0 != Y0``) are not norm preserving (a contrast below).

Symmetry.  Hypotheses: ``F(Y^T) = F(Y)^T`` and ``Y0 = Y0^T`` (heat equation with a
symmetric low-rank source, differential Riccati equation).  Then the K- and L-steps of
the BUG family coincide and ``Y`` stays symmetric up to round-off, ``20 N eps ||Y||`` per
step, magnified where a truncation cuts between close singular values by
``s_1 / (s_r1 - s_r1+1)`` (Wedin; recorded from the run, as in test_invariants).  KSL's
sequential K-S-L substeps break it (a contrast below).

Batches: the reference problems of ``lowrank_core.problems`` are unbatched, so a drawn
example stacks independent instances: Schrödinger states of seeds ``seed + k`` under the
shared (broadcast) operator; heat problems of seeds ``k`` (own source ``C`` and start,
a ``LinearMatrixODE`` with a stacked low-rank ``C``); Riccati problems with shifts
``lambda = 1 + k`` (a ``RiccatiODE`` with stacked ``A``).  The members do not interact
except through the shared rank of RA-BUG / abc-PSI, which keeps each member's truncation
within ``theta``; norms, energies, symmetry defects and their bounds (the Wedin factor
included) are per member.  The contrasts and the planted bugs are unbatched NumPy runs on
one fixed instance: they check the checks, not the backends.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc
from lowrank_core import problems

from .._helpers import dense, to_numpy
from ._problems import configure, record_truncations, stack_lowrank, truncation_condition
from .strategies import BATCHES, scaled, step_sizes, tolerances

H_NORM = 8.0
SUBSTEPS = {"ksl": 3, "ksl-strang": 5, "ra-bug": 3, "abc-psi": 3}
CONSERVING = sorted(SUBSTEPS)


@st.composite
def schrodinger_runs(draw):
    N = draw(st.integers(12, 32))
    return N, draw(st.integers(2, 6)), draw(step_sizes(0.005, 0.05)), draw(tolerances(1e-8, 1e-4)), draw(
        st.integers(0, 2**16)), draw(st.sampled_from(BATCHES))


def member_energies(Y, D, Vc):
    """``Re <Y, H[Y]>`` of each batch member (NumPy)."""
    Yd = dense(Y)
    H = D @ Yd + Yd @ D.T + Vc @ Yd @ Vc.T
    return np.sum(np.real(np.conj(Yd) * H), axis=(-2, -1))


def conservation_drifts(xp, N, r, h, theta, seed, method, steps=8, batch=(), kit=None):
    """Per-step norm and energy changes and their bounds (see the module docstring), each of
    shape ``(steps, *batch)``: one bound per member."""
    members = [problems.schrodinger(N=N, r=r, t_end=steps * h, xp=xp, seed=seed + k)
               for k in range(int(np.prod(batch, dtype=int)))]
    sp = members[0]
    Y0 = stack_lowrank(xp, [p.Y0 for p in members], batch)
    kw = {"tol": theta, "max_rank": N} if lc.METHODS[method].rank_adaptive else {}
    sol = lc.solve(sp.problem, Y0, sp.t_span, h, method=configure(method, kit, **kw))
    norms = np.array([np.sqrt(np.sum(np.abs(to_numpy(Y.S)) ** 2, axis=(-2, -1))) for Y in sol.Ys])
    D, Vc = to_numpy(sp.D), to_numpy(sp.Vc)
    energies = np.array([member_energies(Y, D, Vc) for Y in sol.Ys])
    y6 = SUBSTEPS.get(method, 3) * (h * H_NORM) ** 6 / 72 + 20 * N * np.finfo(float).eps
    th = theta if kw else 0.0
    norm_bound = y6 * norms[:-1] + th
    energy_bound = H_NORM * (y6 * norms[:-1] ** 2 + 2 * norms[:-1] * th + th**2)
    return np.abs(np.diff(norms, axis=0)), norm_bound, np.abs(np.diff(energies, axis=0)), energy_bound


def check_conservation(xp, N, r, h, theta, seed, method, batch=(), kit=None):
    dn, nb, de, eb = conservation_drifts(xp, N, r, h, theta, seed, method, batch=batch, kit=kit)
    assert np.all(dn <= nb), ("norm", dn, nb)
    assert np.all(de <= eb), ("energy", de, eb)


@pytest.mark.parametrize("name", CONSERVING)
@scaled(0.2)
@given(example=schrodinger_runs())
def test_norm_and_energy_are_conserved(xp, name, example):
    *run, batch = example
    check_conservation(xp, *run, name, batch=batch)


@pytest.mark.parametrize("name", ["bc-psi", "bug"])
def test_bug_and_bc_psi_are_not_norm_preserving(np_xp, name):
    """The contrast: fixed-rank BUG's ``M S0 N^H`` and BC-PSI's ``P_{U1} Y0`` lose mass, far
    beyond the substep bound that KSL meets on the same run."""
    dn, nb, _, _ = conservation_drifts(np_xp, 40, 8, 0.01, 0.0, 0, name)
    assert np.max(dn / nb) > 100


class DroppedAugmentationKit(lc.integrators.StepKit):
    """The planted bug: ``augment(new, old)`` returns ``orth(new)`` only."""

    def augment(self, new, old):
        return self.qr(new)[0]


def test_norm_conservation_catches_a_dropped_augmentation(np_xp):
    """Planted bug: the augmented basis drops the old columns (``orth(K1)`` instead of
    ``orth([K1, U0])``), so ``Û Ŝ0 V̂^H != Y0`` and RA-BUG loses mass like fixed-rank BUG."""
    check_conservation(np_xp, 40, 8, 0.01, 1e-8, 0, "ra-bug")
    with pytest.raises(AssertionError, match="norm"):
        check_conservation(np_xp, 40, 8, 0.01, 1e-8, 0, "ra-bug", kit=DroppedAugmentationKit)


# ---------------------------------------------------------------------- symmetry
@st.composite
def symmetric_problems(draw):
    kind = draw(st.sampled_from(["heat", "riccati"]))
    size = draw(st.integers(12, 24))
    r = draw(st.integers(2, 6))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return kind, size, r, dtype, draw(st.sampled_from(BATCHES))


def stacked_symmetric(xp, kind, size, r, dt, batch):
    """``(problem, Y0, h)`` of ``prod(batch)`` independent symmetric problems (module docstring)."""
    count = int(np.prod(batch, dtype=int))

    def stack(arrays):
        x = xp.stack(arrays)
        return xp.reshape(x, (*batch, *x.shape[1:]))

    if kind == "heat":
        ps = [problems.heat_lyapunov(size=size, r=r, t_end=1.0, xp=xp, dtype=dt, seed=k) for k in range(count)]
        C = lc.LowRank(*(stack([getattr(p.problem.C, f) for p in ps]) for f in "USV"))
        problem = lc.LinearMatrixODE(ps[0].problem.A, ps[0].problem.B, C)
    else:
        ps = [problems.riccati(m=size, r=r, q=3, t_end=1.0, lam=1.0 + k, xp=xp, dtype=dt) for k in range(count)]
        problem = problems.RiccatiODE(stack([p.problem.A for p in ps]), ps[0].problem.C)
    return problem, stack_lowrank(xp, [p.Y0 for p in ps], batch), min(p.suggested_dt for p in ps)


def check_symmetry(xp, kind, size, r, dtype, method, steps=6, batch=(), kit=None):
    dt = getattr(xp, dtype)
    problem, Y0, h = stacked_symmetric(xp, kind, size, r, dt, batch)
    kw = {"tol": 1e-6, "max_rank": size} if lc.METHODS[method].rank_adaptive else {}
    method_, records = record_truncations(configure(method, kit, **kw))
    sol = lc.solve(problem, Y0, (0.0, steps * h), h, method=method_)
    Y = dense(sol.Y)
    eps = float(np.finfo(np.dtype(dtype)).eps)
    defect = np.linalg.norm(Y - np.swapaxes(Y, -1, -2), axis=(-2, -1))
    bound = 20 * steps * size * eps * truncation_condition(records) * np.linalg.norm(Y, axis=(-2, -1))
    assert np.all(defect <= bound), (defect, bound)


@pytest.mark.parametrize("name", ["bug", "parallel-bug", "ra-bug"])
@scaled(0.2)
@given(example=symmetric_problems())
def test_bug_family_keeps_symmetry(xp, name, example):
    *run, batch = example
    check_symmetry(xp, *run, name, batch=batch)


def test_psi_does_not_keep_symmetry(np_xp):
    """The contrast: KSL's sequential substeps break the symmetry at the level of the
    splitting error (measured 1e-7 relative on this heat problem, far above round-off)."""
    with pytest.raises(AssertionError):
        check_symmetry(np_xp, "heat", 24, 8, "float64", "ksl")


class SequentialKLKit(lc.integrators.StepKit):
    """The planted bug: the L-step in the new basis ``U1`` (PSI order)."""

    def kl_steps(self, t0, t1, Y0):
        F0 = self.evaluate(t0, Y0)
        K1 = self.k_step(t0, t1, Y0.U @ Y0.S, Y0.V, first=F0)
        U1, R = self.qr(K1)
        L1 = self.l_step(t0, t1, Y0.V @ self.ch(R), U1)
        return K1, L1, F0


def test_symmetry_catches_sequential_k_and_l_steps(np_xp):
    """Planted bug: the L-step of the BUG family uses the *new* basis ``U1`` (PSI order)
    instead of ``U0``, so the K- and L-steps no longer play symmetric roles."""
    check_symmetry(np_xp, "heat", 20, 4, "float64", "bug")
    with pytest.raises(AssertionError):
        check_symmetry(np_xp, "heat", 20, 4, "float64", "bug", kit=SequentialKLKit)
