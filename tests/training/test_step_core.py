"""One step core: the training optimizers and the integrators share their basis changes.

The basis changes (backward correction, augmentation, core assembly, truncation) live
in ``lowrank_core.integrators._steps`` and both the integrators and the training
optimizers of the same name call them.  These tests check that they *are* shared, not
only equal: a re-implementation in either place would agree with the other today and
drift tomorrow (issue 19, item 10).
"""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc
import lowrank_core.training as lt
from lowrank_core import problems
from lowrank_core.integrators import _steps

from .._helpers import eps_of

# (training optimizer, integrator, optimizer steps per integrator step, the step pieces
# a step must call)
PAIRS = {
    "bc-psi": (lambda h: lt.BCPSI(h), lambda: lc.BCPSI(substep="euler"), 2, {"corrected_basis", "l_close"}),
    "abc-psi": (
        lambda h: lt.ABCPSI(h, rtol=0.05),
        lambda: lc.ABCPSI(substep="euler", rtol=0.05),
        2,
        {"augmented_basis", "truncate_l"},
    ),
    "ra-bug": (
        lambda h: lt.RABUG(h, rtol=0.05),
        lambda: lc.RABUG(substep="euler", rtol=0.05),
        3,
        {"augmented_bases", "svd_truncate"},
    ),
    "parallel-bug": (
        lambda h: lt.ParallelBUG(h, rtol=0.05),
        lambda: lc.ParallelBUG(substep="euler", rtol=0.05),
        1,
        {"parallel_core", "svd_truncate"},
    ),
    "heavy-ball": (
        lambda h: lt.HeavyBall(h, beta=0.0, rtol=0.05),
        lambda: lc.ParallelBUG(substep="euler", rtol=0.05),
        1,
        {"parallel_core", "svd_truncate"},
    ),
    "adam": (lambda h: lt.Adam(h, rtol=0.05), None, 1, {"parallel_core", "svd_truncate"}),
}


def _setup():
    q = problems.quadratic_flow(30, 20, 4, seed=0, init_scale=0.3)
    B = q.B

    def grad(W):  # not a plain quadratic: see test_optimizers.test_one_cycle_equals_the_integrator...
        return W - B + 0.1 * W**3

    return B, q.Y0, grad, lc.MatrixODE(lambda t, Y: -grad(Y))


def _record(monkeypatch):
    """Wrap every public function of ``_steps`` to record its name when called."""
    calls: list[str] = []
    for name in _steps.__all__:
        real = getattr(_steps, name)

        def wrapped(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(_steps, name, wrapped)
    return calls


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_optimizer_and_integrator_call_the_same_step_pieces(name, monkeypatch):
    """One cycle of the training optimizer (k = 1) and one step of its integrator twin
    call the same functions of ``_steps``, each as often.  Guards against a basis change
    written again inside the optimizer (the state before issue 19: parallel BUG's core
    assembly and abc-PSI's close were copies; planted by inlining
    ``parallel_core`` back into ``lt.ParallelBUG._close``, the optimizer records no
    ``parallel_core`` call and this test fails)."""
    make_opt, make_int, per_step, pieces = PAIRS[name]
    B, Y0, grad, problem = _setup()
    calls = _record(monkeypatch)
    opt = make_opt(0.3)
    param = opt.init(Y0)
    for _ in range(per_step):
        param = opt.step(param, grad=grad(param.to_dense()))
    from_opt = sorted(calls)
    assert set(from_opt) == pieces
    if make_int is None:  # low-rank Adam has no integrator twin: it is parallel BUG's close
        return
    calls.clear()
    make_int().step(problem, 0.0, 0.3, Y0, None)
    assert sorted(calls) == from_opt


@pytest.mark.parametrize("name", sorted(n for n in PAIRS if PAIRS[n][1] is not None))
def test_a_changed_step_piece_changes_both_alike(name, monkeypatch):
    """With a step piece replaced by a different (still valid) one, the k = 1 cycle of the
    optimizer and the integrator step still agree to round-off, and both differ from
    the unchanged step: they run one implementation.  The change: ``svd_truncate`` and
    ``truncate_l`` keep one rank less than asked (``max_rank`` lowered by one), and
    ``corrected_basis`` rescales ``S̃`` by 1.01 (BC-PSI has no truncation).  A copy of a
    piece in either place would not see the change and the two would differ by
    O(1e-2) (planted by calling ``kit.svd`` + ``kit.truncate`` directly in the
    optimizer's close).  Tolerance: the round-off of one step, amplified by the QR/SVD
    conditioning as in test_optimizers (1e3 eps of ||B||)."""
    make_opt, make_int, per_step, _ = PAIRS[name]
    B, Y0, grad, problem = _setup()
    h = 0.3

    def run():
        opt = make_opt(h)
        param = opt.init(Y0)
        for _ in range(per_step):
            param = opt.step(param, grad=grad(param.to_dense()))
        Y1 = make_int().step(problem, 0.0, h, Y0, None)[0]
        return param.to_dense(), Y1.to_dense()

    plain_opt, plain_int = run()
    real_svd_truncate, real_truncate_l, real_corrected = _steps.svd_truncate, _steps.truncate_l, _steps.corrected_basis

    def lowered(truncation, rank_in):
        import dataclasses

        return dataclasses.replace(truncation, max_rank=max(1, rank_in - 1))

    def svd_truncate(kit, truncation, U, S, V, rank_in):
        return real_svd_truncate(kit, lowered(truncation, rank_in), U, S, V, rank_in)

    def truncate_l(kit, truncation, U, L, rank_in, variant="min-qr"):
        return real_truncate_l(kit, lowered(truncation, rank_in), U, L, rank_in, variant)

    def corrected_basis(kit, K1, Y0):
        U1, S = real_corrected(kit, K1, Y0)
        return U1, 1.01 * S

    monkeypatch.setattr(_steps, "svd_truncate", svd_truncate)
    monkeypatch.setattr(_steps, "truncate_l", truncate_l)
    monkeypatch.setattr(_steps, "corrected_basis", corrected_basis)
    changed_opt, changed_int = run()
    tol = 1e3 * eps_of("float64") * np.linalg.norm(B)
    np.testing.assert_allclose(changed_opt, changed_int, rtol=0, atol=tol)
    assert np.linalg.norm(changed_opt - plain_opt) > 1e3 * tol  # the change did reach both
    np.testing.assert_allclose(plain_opt, plain_int, rtol=0, atol=tol)


@pytest.mark.parametrize("poisoned", [0, 1, 2])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["dK", "dL", "S"])
def test_deferred_gradient_check_catches_nan_and_both_infinities(bad, where, poisoned):
    """The torch optimizer's NaN/Inf check at the end of a phase (one host read-back)
    catches NaN, +Inf and -Inf in any gradient the phase uses, in any of its steps: the
    last step's gradients are checked by name; earlier steps (the first, on the
    functional path, and the in-place one between) through the arrays they wrote,
    named by the gradient that feeds the array when the poisoned step is the one just
    before the last (after an earlier one the poisoned weight makes every later
    gradient NaN).  Large finite gradients are not reported.  Guards the cheap
    reduction (planted as ``amax`` alone, -Inf is missed) and the phase check of the
    written arrays (planted: only the last step's gradients checked, ``poisoned`` 0
    and 1 pass unreported)."""
    torch = pytest.importorskip("torch")
    from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(LowRankLinear(12, 16, 4), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    method = "parallel-bug"  # a tangent method: every step uses grad_K, grad_L and grad_S
    opt = LowRankOptimizer(model.parameters(), method, lr=0.01, basis_update_every=3)
    x = torch.randn(8, 12)
    for step in range(3):
        opt.zero_grad()
        model(x).square().sum().backward()
        if step == poisoned:  # reported at the end of the phase
            layer = model[0]
            getattr(layer, where).grad[1, 2] = bad
        if step < 2:
            opt.step()
        else:
            name = {"dK": "grad_K", "dL": "grad_L", "S": "grad_S"}[where]
            match = f"`{name}` contains NaN or Inf" if poisoned == 2 else "after optimizer steps 0 to 1"
            with pytest.raises(lt.NonFiniteGradientError, match=match) as info:
                opt.step()
            assert info.value.step == 2
            if poisoned:
                assert info.value.name == name
    clean = torch.nn.Sequential(LowRankLinear(12, 16, 4), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    opt = LowRankOptimizer(clean.parameters(), method, lr=0.01, basis_update_every=3)
    for _ in range(3):
        opt.zero_grad()
        clean(1e3 * x).square().sum().backward()  # large but finite gradients: no report
        opt.step()
