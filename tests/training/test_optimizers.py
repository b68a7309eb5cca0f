"""The low-rank optimizers: agreement with the integrators, transport, schedule, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc
import lowrank_core.training as lt
from lowrank_core import problems

from .._helpers import eps_of, to_numpy


def _quadratic(m=30, n=20, r=4, seed=0):
    q = problems.quadratic_flow(m, n, r, seed=seed, init_scale=0.3)
    return q.B, q.Y0


def _run(opt, Y0, B, steps, counters=None):
    param = opt.init(Y0)
    for _ in range(steps):
        param = opt.step(param, grad=param.to_dense() - B, counters=counters)
    return param


# (training optimizer, integrator, optimizer steps per integrator step)
PAIRS = [
    (lambda h: lt.PSI(h), lambda: lc.KSL(substep="euler"), 3),
    (lambda h: lt.BCPSI(h), lambda: lc.BCPSI(substep="euler"), 2),
    (lambda h: lt.ABCPSI(h, rtol=0.05), lambda: lc.ABCPSI(substep="euler", rtol=0.05), 2),
    (lambda h: lt.RABUG(h, rtol=0.05), lambda: lc.RABUG(substep="euler", rtol=0.05), 3),
    (lambda h: lt.ParallelBUG(h, rtol=0.05), lambda: lc.ParallelBUG(substep="euler", rtol=0.05), 1),
    (lambda h: lt.HeavyBall(h, beta=0.0, rtol=0.05), lambda: lc.ParallelBUG(substep="euler", rtol=0.05), 1),
]


@pytest.mark.parametrize(("make_opt", "make_int", "per_step"), PAIRS, ids=["psi", "bc-psi", "abc-psi", "ra-bug",
                                                                          "parallel-bug", "heavy-ball-beta0"])
def test_one_cycle_equals_the_integrator_with_euler_substeps(make_opt, make_int, per_step):
    """With a full gradient (the same at every pass) and basis_update_every = 1, one
    cycle of the training form is one step of the integrator with explicit Euler
    substeps on dY/dt = -G(Y), h = lr: every substep starts at the point the integrator
    uses.  In particular the heavy ball with beta = 0 is parallel BUG.

    The loss is L(W) = ||W - B||^2/2 + c sum W_ij^4 / 4, G = W - B + c W^3 (entry-wise):
    a plain quadratic has a Krylov structure that makes [K1, U0] exactly rank deficient
    after a rank increase, and the extra QR columns are then round-off noise that two
    correct implementations fill differently.  Compared over 10 integrator steps with a
    rank-adaptive tolerance; the difference is round-off, amplified by the moderate
    conditioning of the QR/SVD steps, hence 1e3 eps relative to ||B||."""
    B, Y0 = _quadratic()

    def grad(W):
        return W - B + 0.1 * W**3

    h = 0.3
    opt, integ = make_opt(h), make_int()
    problem = lc.MatrixODE(lambda t, Y: -grad(Y))
    param, Y = opt.init(Y0), Y0
    ranks = set()
    for k in range(10):
        for _ in range(per_step):
            param = opt.step(param, grad=grad(param.to_dense()))
        Y, _, _ = integ.step(problem, k * h, (k + 1) * h, Y, None)
        assert param.on_manifold
        assert param.rank == Y.rank
        ranks.add(Y.rank)
        tol = 1e3 * eps_of("float64") * np.linalg.norm(B)
        np.testing.assert_allclose(param.to_dense(), Y.to_dense(), rtol=0, atol=tol)
    assert len(ranks) > 1 or not opt.rank_adaptive  # the adaptive runs do change the rank


def test_transport_equals_projection_at_the_new_point(np_xp):
    """transport_tangent(M) == P(Y1) M (dense projector) for a non-tangent M and bases of a
    different rank, to round-off."""
    rng = np.random.default_rng(1)
    m, n, r, r1 = 25, 18, 4, 6
    U0, V0 = np.linalg.qr(rng.standard_normal((m, r)))[0], np.linalg.qr(rng.standard_normal((n, r)))[0]
    U1, V1 = np.linalg.qr(rng.standard_normal((m, r1)))[0], np.linalg.qr(rng.standard_normal((n, r1)))[0]
    A, Bc, C = rng.standard_normal((r, r)), rng.standard_normal((m, r)), rng.standard_normal((n, r))
    M = U0 @ A @ V0.T + Bc @ V0.T + U0 @ C.T
    PU, PV = U1 @ U1.T, V1 @ V1.T
    PM = PU @ M + M @ PV - PU @ M @ PV
    A1, B1, C1 = lt.transport_tangent(U0, V0, A, Bc, C, U1, V1, np_xp)
    tol = 100 * eps_of("float64") * np.linalg.norm(M)
    np.testing.assert_allclose(U1 @ A1 @ V1.T + B1 @ V1.T + U1 @ C1.T, PM, atol=tol)
    np.testing.assert_allclose(U1.T @ B1, 0, atol=tol)
    np.testing.assert_allclose(V1.T @ C1, 0, atol=tol)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("kind", ["heavy-ball", "adam"])
def test_momentum_is_tangent_after_every_step(kind, k):
    """At every basis change (also across rank changes) the momentum equals P(Y1) M_old
    (checked densely) in tangent coordinates, U^T B_U = 0 and V^T B_V = 0; Adam's
    first moment keeps that gauge after every step (its element-wise step needs it),
    heavy ball's only after a basis change (between them it adds the gradient in
    ParallelBUG's product-free coordinates, the same matrices).  Guards against a
    transport that does not project, or a momentum built from the wrong gradient."""
    B, Y0 = _quadratic(seed=2)
    opt = (lt.HeavyBall(0.2, beta=0.9, rtol=1e-3, basis_update_every=k) if kind == "heavy-ball"
           else lt.Adam(0.02, rtol=1e-3, basis_update_every=k))
    keys = ("B_S", "B_U", "B_V") if kind == "heavy-ball" else ("m_S", "m_U", "m_V")
    param = opt.init(Y0)
    ranks = set()
    for _ in range(30):
        old = param
        param = opt.step(param, grad=param.to_dense() - B)
        S_, U_, V_ = (param.state[key] for key in keys)
        scale = 1e3 * eps_of("float64") * (1 + np.linalg.norm(U_) + np.linalg.norm(V_))
        if kind == "adam" or param.on_manifold:
            np.testing.assert_allclose(param.U.T @ U_, 0, atol=scale)
            np.testing.assert_allclose(param.V.T @ V_, 0, atol=scale)
        if param.on_manifold:
            ranks.add(param.rank)
            if kind == "heavy-ball":  # the momentum before transport is the direction of this step
                b = opt.beta
                g = old.factor_grads(old.to_dense() - B)
                gU = g["K"] - old.U @ (old.U.T @ g["K"])
                gV = g["L"] - old.V @ (old.V.T @ g["L"])
                Ms = (b * old.state["B_S"] + g["S"], b * old.state["B_U"] + gU, b * old.state["B_V"] + gV)
                assert kind != "heavy-ball" or k > 1 or np.abs(old.U.T @ old.state["B_U"]).max() <= scale
                M = old.U @ Ms[0] @ old.V.T + Ms[1] @ old.V.T + old.U @ Ms[2].T
                PU, PV = param.U @ param.U.T, param.V @ param.V.T
                np.testing.assert_allclose(param.U @ S_ @ param.V.T + U_ @ param.V.T + param.U @ V_.T,
                                           PU @ M + M @ PV - PU @ M @ PV, atol=scale * np.linalg.norm(M))
    assert len(ranks) > 1 or k > 1  # the rank-adaptive run changes the rank


@pytest.mark.parametrize("lr", [0.02, 0.05])
def test_geometric_heavy_ball_beats_factor_heavy_ball_on_ill_conditioned_target(lr):
    """methods.md §3.3: target of rank 5 with sigma = (10, 5, 1, 0.1, 0.01), beta = 0.9,
    the same step size for both.  Heavy ball on the raw factors W = A C^T is stable at
    these step sizes (it diverges from lr = 0.15 on); the geometric heavy ball (fixed
    rank 5, momentum transported by projection) must reach L < 1e-6 at least 5x sooner
    in steps.  (At lr = 0.1, the largest stable factor step, the factor method needs
    448 steps and the ratio is about 3; bench/training.py records both.)"""
    from lowrank_core.bench import factor_heavy_ball

    q = problems.quadratic_flow(50, 40, 5, spectrum=(10, 5, 1, 0.1, 0.01))
    B, Y0 = q.B, q.Y0
    sq = np.sqrt(np.diag(Y0.S))
    n_factor, losses = factor_heavy_ball(B, Y0.U * sq, Y0.V * sq, lr=lr, beta=0.9, steps=20000, target=1e-6)
    assert n_factor < 20000
    assert max(losses) <= losses[0]
    loss = lambda W: 0.5 * np.sum((W - B) ** 2)  # noqa: E731
    _, hist = lt.fit(lt.HeavyBall(lr, beta=0.9), Y0, lambda W: W - B, steps=n_factor, loss=loss, target=1e-6)
    n_geo = len(hist["loss"]) - 1
    assert hist["loss"][-1] < 1e-6
    assert 5 * n_geo <= n_factor, (n_geo, n_factor)


@pytest.mark.parametrize("name", ["abc-psi", "bc-psi", "ra-bug", "parallel-bug"])
def test_descent_and_convergence_to_eckart_young(name):
    """methods.md §4.5-4.6: L = ||W - B||^2/2 is 1-smooth; with h <= 1 the augmented and
    backward-corrected methods never raise the loss (to 1e-12 relative round-off) and
    converge to the Eckart-Young loss (1e-8 relative after 60 cycles)."""
    q = problems.quadratic_flow(40, 30, 4)
    opt = lt.OPTIMIZERS[name](0.5)
    loss = lambda W: 0.5 * np.sum((W - q.B) ** 2)  # noqa: E731
    _, hist = lt.fit(opt, q.Y0, lambda W: W - q.B, steps=180, loss=loss)
    L = np.array(hist["loss"])
    assert np.all(np.diff(L) <= 1e-12 * L[:-1])
    assert L[-1] == pytest.approx(q.optimal_loss, rel=1e-8)


def test_psi_s_phase_ascends():
    """PSI's S-phase is gradient ascent: it raises the loss in some steps, which the
    backward-corrected methods avoid."""
    B, Y0 = _quadratic(seed=3)
    opt = lt.PSI(0.5)
    param, rises = opt.init(Y0), 0
    for _ in range(60):
        phase = opt.phase(param)
        before = 0.5 * np.sum((param.to_dense() - B) ** 2)
        param = opt.step(param, grad=param.to_dense() - B)
        rises += phase == "S" and 0.5 * np.sum((param.to_dense() - B) ** 2) > before
    assert rises > 0


@pytest.mark.parametrize(("name", "qr_per_cycle", "svd_per_cycle", "cycle"),
                         [("abc-psi", 1, 1, 2), ("ra-bug", 2, 1, 3), ("parallel-bug", 2, 1, 1), ("bc-psi", 2, 0, 2),
                          ("psi", 2, 0, 3)])
@pytest.mark.parametrize("k", [1, 4])
def test_basis_update_schedule_counts(name, qr_per_cycle, svd_per_cycle, cycle, k):
    """basis_update_every = k: a cycle has len(phases) * k optimizer steps and the same
    decompositions whatever k, so k times fewer per optimizer step; one gradient per step."""
    B, Y0 = _quadratic()
    opt = lt.OPTIMIZERS[name](0.1, basis_update_every=k)
    counters = lc.Counters()
    steps = 12 * cycle * k  # 12 full cycles
    _run(opt, Y0, B, steps, counters)
    n_cycles = steps // (cycle * k)
    assert counters.qr == qr_per_cycle * n_cycles
    assert counters.svd == svd_per_cycle * n_cycles
    assert counters.rhs_evals == steps


def test_stacked_layers_update_in_one_batched_call():
    """A stack of L equally shaped layers: one thin_qr / thin_svd call per basis change
    for the whole stack (counted per matrix), and the same result as L separate
    parameters (fixed rank: the shared-rank rule does not apply).  The calls are counted
    with the kernels forced (``use_linalg("kernels")``), where ``counters.kernel_calls``
    counts one per decomposition call whatever its batch size: a per-layer loop would
    make ``L`` times as many."""
    rng = np.random.default_rng(4)
    L, m, n, r = 3, 20, 15, 3
    Bs = rng.standard_normal((L, m, n))
    Y0s = lc.LowRank.from_dense(rng.standard_normal((L, m, n)), rank=r)
    opt = lt.Adam(0.01)
    counters = lc.Counters()
    with lc.use_linalg("kernels"):
        stacked = _run(opt, Y0s, Bs, 5, counters)
    assert counters.kernel_calls == 10 + 5  # 10 QR and 5 SVD calls, each on the whole stack
    assert counters.qr == 10 * L
    assert counters.svd == 5 * L
    for i in range(L):
        Yi = lc.LowRank(Y0s.U[i], Y0s.S[i], Y0s.V[i])
        single = _run(opt, Yi, Bs[i], 5)
        np.testing.assert_allclose(stacked.to_dense()[i], single.to_dense(), atol=1e-12 * np.linalg.norm(Bs[i]))


@pytest.mark.parametrize("name", sorted(lt.OPTIMIZERS))
def test_backends_agree(xp, name):
    """Every optimizer runs on each array-API backend (array-api-strict catches NumPy-isms)
    and matches NumPy to float64 round-off after two cycles."""
    rng = np.random.default_rng(5)
    m, n, r = 12, 10, 2
    B_np = rng.standard_normal((m, n))
    Y_np = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=r)
    opt = lt.OPTIMIZERS[name](0.1, rtol=0.05) if lt.OPTIMIZERS[name].rank_adaptive else lt.OPTIMIZERS[name](0.1)
    ref = _run(opt, Y_np, B_np, 6)
    Y = lc.LowRank(*(xp.asarray(f) for f in (Y_np.U, Y_np.S, Y_np.V)))
    out = _run(opt, Y, xp.asarray(B_np), 6)
    assert type(out.U) is type(Y.U)
    np.testing.assert_allclose(to_numpy(out.to_dense()), ref.to_dense(), atol=1e-10)


def test_inputs_are_not_modified():
    """Read-only inputs: an optimizer step builds new arrays and leaves the old parameter intact."""
    B, Y0 = _quadratic()
    for f in (Y0.U, Y0.S, Y0.V, B):
        f.flags.writeable = False
    opt = lt.HeavyBall(0.1, rtol=0.01)
    p0 = opt.init(Y0)
    W0 = p0.to_dense().copy()
    p1 = opt.step(p0, grad=W0 - B)
    np.testing.assert_array_equal(p0.to_dense(), W0)
    assert p1.step == 1
    assert p0.step == 0


@pytest.mark.parametrize("name", sorted(lt.OPTIMIZERS))
def test_backends_agree_on_complex_weights(xp, name):
    """Complex128 weights and gradients: every backend's steps (with ``k = 2``, so both the
    steps between basis updates and the basis updates) match NumPy's to float64
    round-off after two cycles.  The in-place updates have their own complex branches
    on PyTorch (``|g|^2`` of Adam's second moment, the direction ``m / (sqrt(v)/c + eps)``
    with real ``v``); planted, ``|g|`` for ``|g|^2`` there makes the backends differ."""
    rng = np.random.default_rng(5)
    # Two cycles: later, the rank-adaptive methods' augmented bases [K, U0] become
    # numerically rank-deficient on this problem, and each backend's QR completes them
    # with different (arbitrary) directions, which the next steps then move in.
    m, n, r = 20, 16, 2
    B_np = rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n))
    Y_np = lc.LowRank.from_dense(rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n)), rank=r)
    cls = lt.OPTIMIZERS[name]
    opt = cls(0.1, basis_update_every=2, **({"rtol": 0.05} if cls.rank_adaptive else {}))
    ref = _run(opt, Y_np, B_np, 2 * opt.cycle_length)
    Y = lc.LowRank(*(xp.asarray(f) for f in (Y_np.U, Y_np.S, Y_np.V)))
    out = _run(opt, Y, xp.asarray(B_np), 2 * opt.cycle_length)
    assert np.linalg.norm(ref.to_dense() - B_np) < np.linalg.norm(Y_np.to_dense() - B_np)  # it descends
    np.testing.assert_allclose(to_numpy(out.to_dense()), ref.to_dense(), atol=1e-12 * np.linalg.norm(B_np))


def _arrays_of(param):
    return {"U": param.U, "S": param.S, "V": param.V, "dK": param.dK, "dL": param.dL,
            **{k: v for k, v in param.state.items() if isinstance(v, np.ndarray)}}


@pytest.mark.parametrize("name", sorted(lt.OPTIMIZERS))
def test_steps_leave_the_input_parameter_intact(name):
    """``step`` is functional: every array of the input parameter (factors, increments,
    optimizer state) is left as it was, in every phase, between and at basis updates.
    The step is written once, in place (``_update_``), and run on copies of the arrays
    it overwrites (``WRITES``, ``STATE_WRITES``); the arrays are made read-only here, so
    a missing copy (planted: ``"B_U"`` left out of heavy ball's ``STATE_WRITES``, or
    ``dK`` out of ``WRITES["T"]``) raises instead of silently changing the caller's
    parameter."""
    B, Y0 = _quadratic(seed=3)
    cls = lt.OPTIMIZERS[name]
    opt = cls(0.05, basis_update_every=3, **({"rtol": 0.05} if cls.rank_adaptive else {}))
    param = opt.init(Y0)
    for _ in range(2 * opt.cycle_length + 1):
        arrays = _arrays_of(param)
        saved = {k: v.copy() for k, v in arrays.items()}
        for v in arrays.values():
            v.flags.writeable = False
        new = opt.step(param, grad=param.to_dense() - B)
        for k, v in arrays.items():
            np.testing.assert_array_equal(v, saved[k], err_msg=f"{name}: {k} changed at step {param.step}")
        assert new.step == param.step + 1
        param = new


def test_errors():
    B, Y0 = _quadratic()
    opt = lt.ABCPSI(0.1)
    p = opt.init(Y0)
    G = p.to_dense() - B
    bad = G.copy()
    bad[0, 0] = np.nan
    p = opt.step(p, grad=G)
    with pytest.raises(lt.NonFiniteGradientError, match="step 1") as info:
        opt.step(p, grad=bad)
    assert info.value.step == 1
    with pytest.raises(ValueError, match="`grad_L` is required"):
        opt.step(p, grad_K=p.factor_grads(G)["K"])  # L-phase needs grad_L
    with pytest.raises(ValueError, match="must have shape"):
        opt.step(p, grad_L=G)
    with pytest.raises(TypeError, match="dtype"):
        opt.step(p, grad=G.astype(np.float32))
    with pytest.raises(TypeError, match="array of the parameter.s library"):
        opt.step(p, grad=G.tolist())
    with pytest.raises(ValueError, match="not both"):
        opt.step(p, grad=G, grad_L=G)
    with pytest.raises(TypeError, match="LowRankParam"):
        opt.step(Y0, grad=G)
    with pytest.raises(TypeError, match="LowRank"):
        opt.init(B)
    with pytest.raises(ValueError, match="`lr` must be positive"):
        lt.ABCPSI(0.0)
    with pytest.raises(ValueError, match="`beta`"):
        lt.HeavyBall(0.1, beta=1.0)
    with pytest.raises(ValueError, match="`second_moment`"):
        lt.Adam(0.1, second_moment="full")
    with pytest.raises(TypeError, match="`basis_update_every`"):
        lt.ABCPSI(0.1, basis_update_every=1.5)
    with pytest.raises(ValueError, match="between basis updates"):
        p.lowrank()


@pytest.mark.parametrize("second_moment", ["sqrt", "linear", "reset"])
def test_adam_second_moment_rules(second_moment):
    """All three rules keep v real and non-negative, "sqrt" and "linear" with |m| <= sqrt(v)
    after transport, and reduce the loss of the quadratic toy 10x in 200 steps.  k = 5:
    with k = 1 "reset" restarts Adam every step, which degenerates to sign-like steps."""
    B, Y0 = _quadratic(seed=6)
    opt = lt.Adam(0.02, second_moment=second_moment, rtol=1e-3, basis_update_every=5)
    loss = lambda W: 0.5 * np.sum((W - B) ** 2)  # noqa: E731
    p, hist = lt.fit(opt, Y0, lambda W: W - B, steps=200, loss=loss)
    for key in "SUV":
        v, mom = p.state[f"v_{key}"], p.state[f"m_{key}"]
        assert v.dtype == np.float64
        assert np.all(v >= 0)
        if second_moment != "reset":
            assert np.all(np.abs(mom) <= np.sqrt(v) * (1 + 1e-12) + 1e-300)
    assert hist["loss"][-1] < 0.1 * hist["loss"][0]
