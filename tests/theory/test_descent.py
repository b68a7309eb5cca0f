"""Gradient flows: descent and convergence to the Eckart-Young optimum (methods.md §4.5, §4.6).

Hypotheses: ``L(W) = ||W - B||_F^2 / 2`` (``lowrank_core.problems.quadratic_flow``: 1-smooth,
gradient ``G = W - B``), ``B`` with a drawn spectrum that has a gap at ``r``
(``g = sigma_{r+1} / sigma_r`` in ``[0.2, 0.5]``), a small random rank-``r`` start, one Euler
step per substep (all substeps evaluate ``G(Y0)``), ``h <= 1/L = 1``.

Conclusions, for abc-PSI, RA-BUG and parallel BUG:

* descent: ``Y_half = Y0 - h P̂ G`` with an orthogonal projection ``P̂`` onto a space that
  contains the tangent space (``||P̂ G|| >= ||P(Y0) G||``), and ``||G(Y_half)|| <= ||G(Y0)||``
  for ``h <= 2``; with the truncation ``delta = ||Y1 - Y_half||`` (recorded)
  ``L(Y1) <= L(Y0) - h (1 - h/2) ||P(Y0) G(Y0)||^2 + ||G(Y0)|| delta + delta^2 / 2``;
* convergence: the only local minimum on the rank-``r`` manifold is the Eckart-Young
  truncation, ``L* = (1/2) sum_{j > r} sigma_j^2``; near it each step contracts the
  subspace error like ``rho = 1 - h (1 - g)`` (subspace iteration with ``(1 - h) I + h B``),
  so after ``k`` steps with ``rho^{2k} <= 1e-12`` the excess loss is below ``1e-8 L(Y0)``
  (a margin of 1e4 for the constant), and ``L >= L*`` always (to round-off).

Contrast: PSI's backward S-substep is a gradient-ascent step and raises the loss.

Dtypes: float32 and float64 for descent (the problem is real); the Eckart-Young limit is
checked in float64 only (an excess loss of ``1e-8 L(Y0)`` is below float32 resolution).

Batches: ``lowrank_core.problems.quadratic_flow`` is unbatched, so a drawn example stacks
independent instances (seeds ``seed, seed + 1, ...``; same spectrum, own bases and start)
into one ``F(Y) = B - Y`` with a stacked ``B``.  The bounds above hold per member with that
member's own truncation ``delta`` (recorded per member; a shared rank only changes
``delta``), its own ``L``, ``G`` and ``L*``, and are checked per member.  The rank-growth
example, the PSI contrast and the planted bug are unbatched NumPy examples: they show
behaviour on one fixed instance, not a property over backends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc
from lowrank_core import problems

from .._helpers import dense, to_numpy
from ._problems import as_numpy_state, configure, record_truncations, stack_lowrank, tangent_project
from .strategies import BATCHES, scaled, spectra, tolerances

AUGMENTED = ["abc-psi", "parallel-bug", "ra-bug"]


@st.composite
def gradient_flows(draw, dtypes=("float32", "float64")):
    m, n = draw(st.integers(10, 24)), draw(st.integers(8, 20))
    r = draw(st.integers(1, min(4, min(m, n) // 2)))
    top = draw(spectra(r, kinds=("separated", "graded")))
    g = draw(st.floats(0.2, 0.5))
    tail = top[-1] * g * 0.8 ** np.arange(min(m, n) - r)
    return dict(
        m=m, n=n, r=r, spectrum=tuple(10.0 * np.concatenate([top, tail])), gap=g,
        h=draw(st.floats(0.5, 1.0)), tol=draw(st.none() | tolerances(1e-8, 1e-3)),
        dtype=draw(st.sampled_from(dtypes)), seed=draw(st.integers(0, 2**16)), batch=draw(st.sampled_from(BATCHES)),
    )


class StackedFlow:
    """``prod(batch)`` independent quadratic flows (seeds ``seed + k``) stacked into one problem."""

    def __init__(self, xp, ex):
        batch = ex.get("batch", ())
        flows = [
            problems.quadratic_flow(m=ex["m"], n=ex["n"], r=ex["r"], spectrum=ex["spectrum"], xp=xp,
                                    dtype=getattr(xp, ex["dtype"]), seed=ex["seed"] + k)
            for k in range(int(np.prod(batch, dtype=int)))
        ]
        B = xp.reshape(xp.stack([f.B for f in flows]), (*batch, ex["m"], ex["n"]))
        self.B = to_numpy(B)
        self.problem = lc.MatrixODE(lambda t, Y: B - Y)
        self.Y0 = stack_lowrank(xp, [f.Y0 for f in flows], batch)
        self.optimal_loss = flows[0].optimal_loss  # the same spectrum for every member

    def loss(self, Y):
        """``||Y - B||_F^2 / 2`` of each batch member (NumPy, batch shape)."""
        return 0.5 * np.linalg.norm(dense(Y) - self.B, axis=(-2, -1)) ** 2


def check_descent(xp, ex, name, steps=6, kit=None):
    qp = StackedFlow(xp, ex)
    h = ex["h"]
    B = qp.B
    method, records = record_truncations(configure(name, kit, substep="euler", tol=ex["tol"]))
    sol = lc.solve(qp.problem, qp.Y0, (0.0, steps * h), h, method=method)
    assert len(records) == steps
    eps = float(np.finfo(np.dtype(ex["dtype"])).eps)
    slack = 20 * max(ex["m"], ex["n"]) * eps * np.linalg.norm(B, axis=(-2, -1)) ** 2
    for Y0, Y1, (s, r1) in zip(sol.Ys[:-1], sol.Ys[1:], records, strict=True):
        U, S, V = as_numpy_state(Y0)
        G = U @ S @ np.swapaxes(V, -1, -2) - B
        PG = np.linalg.norm(tangent_project(U, V, G), axis=(-2, -1))
        delta = np.sqrt(np.sum(s[..., r1:] ** 2, axis=-1))
        bound = qp.loss(Y0) - h * (1 - h / 2) * PG**2 + np.linalg.norm(G, axis=(-2, -1)) * delta + delta**2 / 2
        assert np.all(qp.loss(Y1) <= bound + slack), (qp.loss(Y1), bound)


@pytest.mark.parametrize("name", AUGMENTED)
@scaled(0.3)
@given(ex=gradient_flows())
def test_each_step_descends(xp, name, ex):
    check_descent(xp, ex, name)


def check_eckart_young(xp, ex, name):
    qp = StackedFlow(xp, ex)
    h = ex["h"]
    rho = 1.0 - h * (1.0 - ex["gap"])
    steps = math.ceil(math.log(1e-12) / (2 * math.log(rho)))
    sol = lc.solve(qp.problem, qp.Y0, (0.0, steps * h), h, method=configure(name, substep="euler"))
    losses = np.array([qp.loss(Y) for Y in sol.Ys])  # (steps + 1, *batch)
    roundoff = 100 * np.finfo(np.float64).eps * np.sum(np.square(ex["spectrum"]))
    assert np.all(losses >= qp.optimal_loss - roundoff)
    assert np.all(losses[-1] - qp.optimal_loss <= 1e-8 * losses[0] + roundoff), (losses[-1], qp.optimal_loss)


@pytest.mark.parametrize("name", AUGMENTED)
@scaled(0.2)
@given(ex=gradient_flows(dtypes=("float64",)))
def test_converges_to_the_eckart_young_optimum(xp, name, ex):
    check_eckart_young(xp, ex, name)


@pytest.mark.parametrize(("name", "variant"), [("abc-psi", "min-qr"), ("abc-psi", "two-qr"), ("ra-bug", None),
                                               ("parallel-bug", None)])
def test_rank_grows_to_the_target_rank(name, variant):
    check_rank_growth(name, variant)


def check_rank_growth(name, variant, kit=None):
    """With ``tol = theta`` the augmented methods can raise the rank (up to ``2r`` per step),
    so the flow towards a rank-6 target started at rank 2 reaches rank 6 and the loss the
    truncation floor ``O(theta^2)``.  With ``h = 1`` abc-PSI and RA-BUG step to
    ``Y_half = P̂ B`` (``P̂ Y0 = Y0``), of rank at most ``rank B = 6``, so they never exceed
    it; parallel BUG's ``Y_half = P(Y0) B`` may have rank ``2r`` on the way."""
    rng = np.random.default_rng(3)
    B = lc.LowRank.from_dense(rng.standard_normal((30, 20)), rank=6).to_dense()
    Y0 = lc.LowRank.from_dense(rng.standard_normal((30, 20)), rank=2)
    kw = {"variant": variant} if variant else {}
    method = configure(name, kit, substep="euler", tol=1e-8, **kw)
    sol = lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 30.0), 1.0, method=method)
    assert sol.ranks[-1] == 6
    if name != "parallel-bug":
        assert max(sol.ranks) == 6
    assert 0.5 * np.linalg.norm(sol.Y.to_dense() - B) ** 2 < 1e-12


def test_psi_backward_s_step_ascends():
    """The contrast: KSL's backward S-substep is a gradient-ascent step and raises the loss
    in some steps (methods.md §4.5), which the augmented methods avoid by construction."""
    qp = problems.quadratic_flow(m=60, n=40, r=5, seed=1)
    method, Y, h, ascents = lc.KSL(substep="euler"), qp.Y0, 0.5, 0
    for k in range(40):
        kit = method.make_kit(qp.problem, Y)
        U1, S_hat = kit.qr(kit.k_step(k * h, (k + 1) * h, Y.U @ Y.S, Y.V))
        S_tilde = kit.s_step(k * h, (k + 1) * h, S_hat, U1, Y.V, sign=-1.0)
        before = qp.loss(lc.LowRank(U1, S_hat, Y.V))
        ascents += qp.loss(lc.LowRank(U1, S_tilde, Y.V)) > before
        Y, _, _ = method.step(qp.problem, k * h, (k + 1) * h, Y, None)
    assert ascents > 0


class DroppedAugmentationKit(lc.integrators.StepKit):
    """The planted bug: ``augment(new, old)`` returns ``orth(new)`` only."""

    def augment(self, new, old):
        return self.qr(new)[0]


@pytest.mark.parametrize("name", ["abc-psi", "parallel-bug"])
def test_descent_and_rank_growth_catch_a_dropped_augmentation(np_xp, name):
    """Planted bug: the augmented basis keeps only the QR of its first block, dropping the
    other columns (``orth(K1)`` in abc-PSI, ``orth(U0)`` in parallel BUG, whose new
    directions ``Ũ1`` then vanish).  abc-PSI's projection ``P_{U1} Y0`` becomes lossy and
    its rank can no longer grow; parallel BUG no longer updates its bases, so its step
    misses the descent ``||P(Y0) G||^2`` promises."""
    ex = dict(m=20, n=16, r=3, spectrum=tuple(10.0 * 0.6 ** np.arange(16)), gap=0.6, h=0.5, tol=None,
              dtype="float64", seed=0)
    check_descent(np_xp, ex, name)
    check_rank_growth(name, None)
    if name == "parallel-bug":
        with pytest.raises(AssertionError):
            check_descent(np_xp, ex, name, kit=DroppedAugmentationKit)
    with pytest.raises(AssertionError):
        check_rank_growth(name, None, kit=DroppedAugmentationKit)
