"""Rank control of the PyTorch optimizer (issue 19): a parameter budget shared by the layers
of a param group, rank schedules and the rank log (lowrank_core/training/_rank_control.py)."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")

from lowrank_core.training.torch import (  # noqa: E402
    LinearRankSchedule,
    LowRankLinear,
    LowRankOptimizer,
    RankLogger,
    RankScheduler,
    StepRankSchedule,
    allocate_ranks,
)

SHAPES = ((12, 24), (24, 24), (24, 16))  # (in, out) of the three low-rank layers


def _model(seed=0, rank=6, max_rank=10):
    torch.manual_seed(seed)
    layers = [LowRankLinear(i, o, rank, max_rank=max_rank, dtype=torch.float64) for i, o in SHAPES]
    return torch.nn.Sequential(
        layers[0], torch.nn.Tanh(), layers[1], torch.nn.Tanh(), layers[2], torch.nn.Linear(16, 3, dtype=torch.float64)
    )


def _backward(model, step):
    g = torch.Generator().manual_seed(100 + step)
    x, y = torch.randn(16, 12, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
    torch.nn.functional.cross_entropy(model(x), y).backward()


def _train(model, opt, steps, check=None):
    for k in range(steps):
        opt.zero_grad()
        _backward(model, k)
        opt.step()
        if check is not None:
            check(k)


def _stored(opt):
    return sum(m.num_parameters for m in opt.layers)


DENSE = sum(i * o for i, o in SHAPES)


# ---------------------------------------------------------------------- the budget holds
@pytest.mark.parametrize("method", ["abc-psi", "ra-bug", "parallel-bug", "heavy-ball", "adam"])
@pytest.mark.parametrize("budget", [0.3, 500])
def test_budget_holds_after_every_basis_update(method, budget):
    """Whenever the layers are at the start of a cycle (after every step that ends one, and
    after ``finish_cycle``), ``sum (m + n) r + r^2`` over the layers is at most the budget,
    and the ranks move (the budget is used, not a fixed cap).  Guards against a budget
    applied to some layers only, or once at the start (the rank-adaptive truncation with
    ``tol = 0`` would then grow the ranks back to ``max_rank``: 1044 entries > 500 here)."""
    model = _model()
    opt = LowRankOptimizer(model.parameters(), method, lr=0.05, param_budget=budget, basis_update_every=2)
    cycle = opt._group_core(opt.param_groups[0]).cycle_length
    limit = budget if isinstance(budget, int) else int(budget * DENSE)
    seen = []

    def check(k):
        if (k + 1) % cycle == 0:
            assert _stored(opt) <= limit
            seen.append(tuple(m.rank for m in opt.layers))

    _train(model, opt, 6 * cycle, check)
    assert len(seen) == 6
    _train(model, opt, 1)  # now in the middle of a cycle
    opt.finish_cycle()
    assert _stored(opt) <= limit
    # the budget is spent, not left idle: the next singular value of no layer fits
    assert _stored(opt) + min(i + o + 2 * m.rank + 1 for (i, o), m in zip(SHAPES, opt.layers, strict=True)) > limit


def test_momentum_is_transported_by_the_cut():
    """The heavy ball's momentum after a budget cut is ``P(Y_k) M`` (the method's transport to
    the cut point), computed here densely.  Guards against slicing the coordinates
    ``(B_S[:k, :k], B_U[:, :k], B_V[:, :k])``, which drops ``U[:, k:] B_S[k:, :k]`` (tangent
    at the cut point, so slicing would keep ``U^T B_U = 0`` and pass a tangency check)."""
    model = _model(rank=8, max_rank=8)
    opt = LowRankOptimizer(model.parameters(), "heavy-ball", lr=0.05, momentum=0.9)
    _train(model, opt, 3)  # momentum built up at rank 8, no budget
    layer = opt.layers[1]
    st = opt.state[layer.S]
    U, V = layer._active("U").clone(), layer._active("V").clone()
    M = U @ st["B_S"] @ V.T + st["B_U"] @ V.T + U @ st["B_V"].T
    opt.param_groups[0]["param_budget"] = 0.2
    opt.__dict__.pop("_budget_done", None)  # as after load_state_dict: every layer is fitted anew
    opt.finish_cycle()
    k = layer.rank
    assert k < 8
    U1, V1 = layer._active("U"), layer._active("V")
    P = lambda Z: U1 @ U1.T @ Z + Z @ V1 @ V1.T - U1 @ U1.T @ Z @ V1 @ V1.T  # noqa: E731
    st = opt.state[layer.S]
    M1 = U1 @ st["B_S"] @ V1.T + st["B_U"] @ V1.T + U1 @ st["B_V"].T
    # float64 products of O(1) factors: round-off ~1e-15 relative to |M|
    torch.testing.assert_close(M1, P(M), atol=1e-12 * float(M.norm()), rtol=0)


# ---------------------------------------------------------------------- global ranking
def _planted_model(values):
    """Layers of SHAPES whose weights have the given singular values (known U, V)."""
    model = _model(rank=6, max_rank=6)
    g = torch.Generator().manual_seed(7)
    for m, s in zip((model[0], model[2], model[4]), values, strict=True):
        out, inn = m.out_features, m.in_features
        U, _ = torch.linalg.qr(torch.randn(out, 6, generator=g, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(inn, 6, generator=g, dtype=torch.float64))
        R = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0]
        S = R @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ R.T  # not diagonal: the SVD path
        m._write(U, S, V)
    return model


def _kept(layer):
    return sorted(torch.linalg.svdvals(layer._active("S")).tolist(), reverse=True)


@pytest.mark.parametrize("ranking", ["absolute", "relative"])
def test_kept_singular_values_are_the_globally_largest(ranking):
    """Planted spectra: layer 0 has large values, layer 1 small ones, layer 2 one large value
    and a tail.  After the budget's allocation the kept values (beyond ``min_rank``) are a
    prefix of all values sorted by the ranking key: the smallest kept key is at least the
    largest discarded key, the weight is the truncated SVD of the planted one, and the next
    value does not fit.  Guards against a per-layer choice (each layer its share of the
    budget, ``budget * m n / sum m n``, filled by its own largest values): that keeps
    layer 1's small values and drops layer 0's larger ones, and fails here."""
    values = [
        [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [20.0, 1.0, 0.95, 0.9, 0.85, 0.8],
    ]
    model = _planted_model(values)
    weights = [m.weight.detach().clone() for m in (model[0], model[2], model[4])]
    budget = 400
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.0, param_budget=budget, budget_ranking=ranking)
    opt.step()  # no gradients: no layer steps, but the fresh layers are fitted to the budget
    layers = (model[0], model[2], model[4])
    ranks = [m.rank for m in layers]
    assert _stored(opt) <= budget
    keys, kept_keys, dropped_keys = [], [], []
    for s, m, r, W in zip(values, layers, ranks, weights, strict=True):
        scale = sum(x * x for x in s) ** 0.5 if ranking == "relative" else 1.0
        key = [x / scale for x in s]
        keys.append(key)
        kept_keys += key[1:r]  # min_rank = 1 is kept whatever its key
        dropped_keys += key[r:]
        # the layer is the truncated SVD of its planted weight (float64 round-off of O(s_1) products)
        torch.testing.assert_close(_kept(m), s[:r], atol=1e-12 * s[0], rtol=0)
        u, sv, vh = torch.linalg.svd(W, full_matrices=False)
        best = u[:, :r] @ torch.diag(sv[:r]) @ vh[:r]
        torch.testing.assert_close(m.weight.detach(), best, atol=1e-12 * s[0], rtol=0)
    assert dropped_keys, "the budget must bind in this test"
    assert min(kept_keys) >= max(dropped_keys)
    # maximal: the best dropped value would not fit
    best = max((k[r], i) for i, (k, r) in enumerate(zip(keys, ranks, strict=True)) if r < len(k))
    i = best[1]
    (inn, out), r = SHAPES[i], ranks[i]
    assert _stored(opt) + inn + out + 2 * r + 1 > budget
    # the planted per-layer choice keeps other ranks
    share = [budget * i * o // DENSE for i, o in SHAPES]
    per_layer = []
    for (inn, out), b in zip(SHAPES, share, strict=True):
        r = max(k for k in range(1, 7) if (inn + out) * k + k * k <= b or k == 1)
        per_layer.append(r)
    assert per_layer != ranks


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([[1.0]], [(4, 3)], [1], 10.5), {}, TypeError, "`budget` must be an integer"),
        (([[1.0]], [(4, 3)], [1], True), {}, TypeError, "`budget` must be an integer"),
        (([[1.0]], [(4, 3)], [1], -1), {}, ValueError, "`budget` must be at least 0"),
        (([[1.0], [2.0]], [(4, 3)], [1, 1], 10), {}, ValueError, "one entry per layer; got 2, 1 and 2"),
        (([[1.0]], [(4, 3)], [1], 10), {"ranking": "largest"}, ValueError, "`ranking`"),
    ],
)
def test_allocate_ranks_refuses_bad_input(args, kwargs, error, match):
    """The public budget rule names the argument at fault.  Guards against a float or
    negative budget silently read as a number of entries (``int(10.5)``, or a negative
    budget that keeps only the floors), and against lists of different lengths cut to the
    shortest by ``zip``."""
    with pytest.raises(error, match=match):
        allocate_ranks(*args, **kwargs)


def test_allocate_ranks_properties():
    """The allocation alone: floors kept, costs summed exactly, prefix order, and
    ``relative`` is invariant to scaling one layer (``absolute`` is not).  Guards against a
    cost that forgets the ``r^2`` of the core (``(m + n) r`` only would keep one more value
    in the first case)."""
    shapes = [(10, 10), (30, 30)]
    s = [[5.0, 4.0, 3.0, 2.0], [4.5, 3.5, 2.5, 1.5]]
    # ranks (2, 1): 20*2+4 + 60+1 = 105; (2, 2) costs 105 + 60 + 3 = 168
    assert allocate_ranks(s, shapes, [1, 1], 167, ranking="absolute") == [2, 1]
    assert allocate_ranks(s, shapes, [1, 1], 168, ranking="absolute") == [2, 2]
    # floors are kept even when they alone exceed the budget
    assert allocate_ranks(s, shapes, [2, 2], 10, ranking="absolute") == [2, 2]
    scaled = [[10 * x for x in s[0]], s[1]]
    for budget in (120, 200, 300):
        assert allocate_ranks(scaled, shapes, [1, 1], budget) == allocate_ranks(s, shapes, [1, 1], budget)
    assert allocate_ranks(scaled, shapes, [1, 1], 200, ranking="absolute") != allocate_ranks(
        s, shapes, [1, 1], 200, ranking="absolute"
    )
    # a layer never gets more values than it has
    assert allocate_ranks(s, shapes, [1, 1], 10**6) == [4, 4]


# ---------------------------------------------------------------------- schedules
def test_linear_schedule_sets_max_rank_at_the_right_epochs():
    """``LinearRankSchedule`` from 10 to 4 over 3 epochs sets the groups' ``max_rank`` to
    10, 8, 6, 4, 4 at epochs 0-4, and the ranks after the next basis update respect it.
    Guards against an off-by-one epoch (the value of epoch e set at e+1) and against a
    schedule that writes the option but is not read by the truncation."""
    model = _model(rank=10, max_rank=10)
    opt = LowRankOptimizer(model.parameters(), "parallel-bug", lr=0.05, tol=0.0)
    sched = LinearRankSchedule(opt, 10, 4, epochs=3, key="max_rank")
    caps = []
    for _epoch in range(5):
        caps.append(opt.param_groups[0]["max_rank"])
        _train(model, opt, 2)
        assert max(opt.ranks()) <= caps[-1]
        sched.step()
    assert caps == [10, 8, 6, 4, 4]
    assert sched.get_last_value() == [4]


def test_step_schedule_sets_the_budget_at_its_milestones():
    """``StepRankSchedule({2: 0.5, 4: 0.2})``: no change before epoch 2, 0.5 from 2, 0.2 from
    4; the stored entries follow after the next basis update.  Guards against a milestone
    applied one epoch late or early."""
    model = _model(rank=8, max_rank=8)
    opt = LowRankOptimizer(model.parameters(), "adam", lr=1e-2, param_budget=1.0)
    sched = StepRankSchedule(opt, {2: 0.5, 4: 0.2})
    budgets, stored = [], []
    for _epoch in range(6):
        budgets.append(opt.param_groups[0]["param_budget"])
        _train(model, opt, 2)
        opt.finish_cycle()
        stored.append(_stored(opt))
        sched.step()
    assert budgets == [1.0, 1.0, 0.5, 0.5, 0.2, 0.2]
    assert all(n <= int(b * DENSE) for n, b in zip(stored, budgets, strict=True))
    assert stored[4] <= int(0.2 * DENSE) < stored[1]


def test_scheduler_state_dict_round_trip_and_pickle():
    """A scheduler restored from ``state_dict()`` (into a fresh one at epoch 0) continues
    with the same values; the schedules pickle.  Guards against a state dict without the
    epoch (the restored one would restart the ramp)."""
    model = _model(rank=10, max_rank=10)
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.05, param_budget=0.9)
    sched = LinearRankSchedule(opt, 0.9, 0.3, epochs=6)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state
    model2 = _model(rank=10, max_rank=10)
    opt2 = LowRankOptimizer(model2.parameters(), "abc-psi", lr=0.05, param_budget=0.9)
    other = LinearRankSchedule(opt2, 0.9, 0.3, epochs=6)
    other.load_state_dict(state)
    for _ in range(2):
        sched.step()
        other.step()
        assert other.get_last_value() == sched.get_last_value()
        assert opt2.param_groups[0]["param_budget"] == opt.param_groups[0]["param_budget"]
    assert other.last_epoch == 5
    assert opt.param_groups[0]["param_budget"] == pytest.approx(0.9 + (0.3 - 0.9) * 5 / 6)
    clone = pickle.loads(pickle.dumps(sched))
    assert clone.state_dict()["last_epoch"] == 5
    lam = RankScheduler(opt, lambda e: 0.5, key="param_budget")
    assert "schedules" not in lam.state_dict()


def test_budget_goes_through_the_optimizer_state_dict():
    """The budget is a group option, so the optimizer's ``state_dict`` carries it and a
    loaded optimizer uses it.  Guards against a budget kept outside the param groups."""
    model = _model()
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.05, param_budget=0.4)
    _train(model, opt, 4)
    state = opt.state_dict()
    opt2 = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.05)
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["param_budget"] == 0.4
    _train(model, opt2, 4)
    opt2.finish_cycle()
    assert _stored(opt2) <= int(0.4 * DENSE)


# ---------------------------------------------------------------------- log
def test_rank_logger_records_what_ranks_reports():
    """Every recorded row has the rank ``optimizer.ranks()`` reports at that moment, the
    layer's module name and its stored entries; ``table`` and ``series`` are views of the
    rows.  Guards against logging ``layer.rank`` mid-cycle (RA-BUG's augmented 2r during
    its S-phase, not the rank of W)."""
    model = _model()
    opt = LowRankOptimizer(model.parameters(), "ra-bug", lr=0.05, rtol=0.05)
    log = RankLogger(opt, model)
    assert log.names == ["0", "2", "4"]
    reported = []
    for epoch in range(4):
        _train(model, opt, 5)  # 5 steps: RA-BUG (cycle of 3 steps) is in its S-phase (2r-column bases) at each record
        rows = log.record(epoch)
        reported.append(opt.ranks())
        assert [r["rank"] for r in rows] == reported[-1]
        assert [r["parameters"] for r in rows] == [m.num_parameters for m in opt.layers]
    table = log.table()
    assert table["epoch"] == [e for e in range(4) for _ in range(3)]
    assert log.series("rank")["2"] == [r[1] for r in reported]
    assert len(log) == 12
    copy = RankLogger(opt)
    copy.load_state_dict(log.state_dict())
    assert copy.rows == log.rows


def test_rank_logger_plot():
    """The plot has one line per layer with the logged ranks."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    model = _model()
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.05, param_budget=0.3)
    log = RankLogger(opt, model)
    for epoch in range(3):
        _train(model, opt, 2)
        log.record(epoch)
    ax = log.plot()
    lines = ax.get_lines()
    assert [list(line.get_ydata()) for line in lines] == list(log.series("rank").values())


# ---------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    model = _model()
    params = list(model.parameters())
    with pytest.raises(TypeError, match="`param_budget`"):
        LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget="half")
    with pytest.raises(TypeError, match="`param_budget`"):
        LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget=True)
    with pytest.raises(ValueError, match="`param_budget`.*fraction"):
        LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget=1.5)
    with pytest.raises(ValueError, match="`param_budget`.*at least 1"):
        LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget=0)
    with pytest.raises(ValueError, match="`param_budget`.*rank-adaptive"):
        LowRankOptimizer(params, "bc-psi", lr=0.1, param_budget=0.5)
    with pytest.raises(ValueError, match="`param_budget`.*min_rank"):
        LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget=50)
    with pytest.raises(ValueError, match="`budget_ranking`"):
        LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget=0.5, budget_ranking="largest")
    opt = LowRankOptimizer(params, "abc-psi", lr=0.1, param_budget=0.5)
    with pytest.raises(TypeError, match="`optimizer`"):
        RankScheduler(torch.optim.SGD(params, lr=0.1), lambda e: 0.5)
    with pytest.raises(ValueError, match="`key`"):
        RankScheduler(opt, lambda e: 0.5, key="rank")
    with pytest.raises(TypeError, match="`schedule`"):
        RankScheduler(opt, 0.5)
    with pytest.raises(TypeError, match="`start` and `end`"):
        LinearRankSchedule(opt, 0.9, 100, epochs=3)
    with pytest.raises(ValueError, match="`epochs`"):
        LinearRankSchedule(opt, 0.9, 0.5, epochs=0)
    with pytest.raises(TypeError, match="`milestones`"):
        StepRankSchedule(opt, [(1, 0.5)])
    sched = RankScheduler(opt, lambda e: 0.5 if e < 2 else 10)  # 10 entries: below the floors
    sched.step()
    with pytest.raises(ValueError, match="`param_budget`"):
        sched.step()
    assert opt.param_groups[0]["param_budget"] == 0.5  # the refused value is not left in the group
    with pytest.raises(TypeError, match="`optimizer`"):
        RankLogger(torch.optim.SGD(params, lr=0.1))
    with pytest.raises(TypeError, match="`state_dict`"):
        sched.load_state_dict([1, 2])
