"""PyTorch adapter: end-to-end training on digits, state round-trip, batching, no torch import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FACTORS = ("U", "S", "V", "dK", "dL")  # the entries of a LowRankLinear that are not unique


def _train_digits():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_digits
    finally:
        sys.path.pop(0)
    return train_digits


@pytest.mark.parametrize("method", ["abc-psi", "adam"])
def test_trains_digits_end_to_end(method):
    """Three epochs of the example (about a second): well above chance (10 %), ranks
    adapted, decompositions counted, abc-PSI with fewer QRs than RA-BUG would spend."""
    td = _train_digits()
    torch.set_num_threads(1)
    res = td.train(method, epochs=3)
    assert res["test_accuracy"] > 60.0
    assert res["qr"] > 0
    assert res["svd"] > 0
    assert all(1 <= r <= 64 for r in res["ranks"])
    assert res["history"]["loss"][-1] < res["history"]["loss"][0]


def test_layer_gradients_are_the_factor_gradients():
    """One backward pass gives dK.grad = G V, dL.grad = G^T U, S.grad = U^T G V."""
    torch.manual_seed(0)
    layer = LowRankLinear(7, 5, rank=3, dtype=torch.float64)
    x = torch.randn(4, 7, dtype=torch.float64)
    W = layer.weight.detach().requires_grad_(True)
    (x @ W.T).pow(2).sum().backward()
    G = W.grad
    layer(x).sub(layer.bias).pow(2).sum().backward()
    torch.testing.assert_close(layer.dK.grad, G @ layer.V)
    torch.testing.assert_close(layer.dL.grad, G.T @ layer.U)
    torch.testing.assert_close(layer.S.grad, layer.U.T @ G @ layer.V)


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(LowRankLinear(12, 16, 4), torch.nn.ReLU(), LowRankLinear(16, 16, 4),
                               torch.nn.ReLU(), LowRankLinear(16, 16, 4), torch.nn.Linear(16, 3))


def _steps(model, opt, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _represented(model):
    """What a state must reproduce, free of the factors' gauge: the weight ``W = U S V^T +
    dK V^T + U dL^T`` of every LowRankLinear (U, S, V alone are not unique: a rotation of
    the basis, or of the extra columns of an augmented basis, changes them but not W) and
    every entry of the state dict that is not a factor (biases, dense layers)."""
    factors = {f"{name}.{f}" for name, m in model.named_modules() if isinstance(m, LowRankLinear) for f in FACTORS}
    out = {f"{name}.W": m.weight.detach() for name, m in model.named_modules() if isinstance(m, LowRankLinear)}
    out.update((k, v) for k, v in model.state_dict().items() if k not in factors)
    return out


def _assert_identical(got, want, where="state"):
    """Equal structure, and every tensor equal bitwise (a loaded copy involves no arithmetic)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in want:
            _assert_identical(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_identical(a, b, f"{where}[{i}]")
    elif torch.is_tensor(want):
        assert torch.is_tensor(got), where
        assert torch.equal(got, want), where
    else:
        assert got == want, where


@pytest.mark.parametrize("method", ["abc-psi", "ra-bug", "heavy-ball", "adam"])
def test_state_dict_round_trip(method):
    """Saving model + optimizer mid-cycle (which finishes the cycle) and loading them into
    fresh objects continues like the uninterrupted run that finishes its cycle at the
    same step (also across rank changes): same ranks, same weights W.

    Guards against a round trip that loses or misplaces state.  Checked by planting each
    bug in the library: loading that replaces the factor Parameters, so the optimizer's
    state (keyed by each layer's S) is orphaned and restarts, fails for every method
    (W off by 27x to 2e4x the tolerance, ra-bug's ranks too); the optimizer state of the
    two 16x16 layers loaded swapped (heavy-ball, adam; under abc-psi and ra-bug the two
    states are equal), an optimizer step counter off by one, and S not restored fail the
    bitwise checks right after loading.

    Right after loading, model and optimizer state must equal the saved ones bitwise.
    After six more steps the raw factors are not compared.  They are not unique: a
    rotation of the basis changes U, S, V but not W.  They also do not agree: the loaded
    factors keep the fresh layer's memory layout (the saved U is row-major, the fresh
    one column-major), BLAS rounds differently, and inside an augmented basis that
    round-off turns U by up to 1e-3 while W moves by about 10 eps.  So W is compared
    (and the biases and dense layers), to 100 eps of its largest entry, with eps taken
    from the layers' dtype: round-off over six steps of QR/SVD and products of inner
    size <= 16 is a few ulps per operation, about 10 eps here; 100 eps leaves a 10x
    margin and stays below every planted bug."""
    options = {"rtol": 0.3, "basis_update_every": 2}
    lr = 1e-2
    model, ref_model = _model(), _model()
    opt = LowRankOptimizer(model, method, lr, **options)
    ref_opt = LowRankOptimizer(ref_model, method, lr, **options)
    _steps(model, opt, 5)
    _steps(ref_model, ref_opt, 5)
    saved_model, saved_opt = model.state_dict(), opt.state_dict()  # both finish the open cycle
    ref_opt.finish_cycle()  # so the uninterrupted run takes the same path
    fresh = _model(seed=7)
    fresh_opt = LowRankOptimizer(fresh, method, lr, **options)
    fresh.load_state_dict(saved_model)
    fresh_opt.load_state_dict(saved_opt)
    assert fresh_opt.ranks() == opt.ranks()
    _assert_identical(fresh.state_dict(), saved_model, "model")
    _assert_identical(fresh_opt.state_dict(), saved_opt, "optimizer")
    _steps(fresh, fresh_opt, 6, seed=2)
    _steps(ref_model, ref_opt, 6, seed=2)
    assert fresh_opt.ranks() == ref_opt.ranks()
    got, want = _represented(fresh), _represented(ref_model)
    assert got.keys() == want.keys()
    for key, b in want.items():
        if not b.is_floating_point():  # the active sizes
            assert torch.equal(got[key], b), key
            continue
        tol = 100 * torch.finfo(b.dtype).eps * b.abs().max().item()
        torch.testing.assert_close(got[key], b, rtol=0, atol=tol, msg=lambda m, key=key: f"{key}: {m}")


def test_equal_layers_are_batched_and_match_unbatched():
    """The two 16x16 layers form one stack: one QR call per basis change for both
    (counted per matrix); at fixed rank the result equals layer-by-layer updates up to
    float32 round-off of the batched LAPACK calls."""
    model, ref = _model(), _model()
    opt = LowRankOptimizer(model, "parallel-bug", 0.05)
    ref_opt = LowRankOptimizer(ref, "parallel-bug", 0.05, batch_layers=False)
    assert [len(g) for g in opt._batches(opt.layers)] == [1, 2]
    _steps(model, opt, 4)
    _steps(ref, ref_opt, 4)
    assert opt.counters.qr == ref_opt.counters.qr == 4 * 2 * 3
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("method", ["psi", "bc-psi", "abc-psi", "ra-bug", "parallel-bug", "heavy-ball", "adam"])
def test_in_place_steps_follow_the_functional_method(method, weight_decay):
    """Between basis updates the torch optimizer runs the method's step in place on the
    layer's factor blocks and state (no copies, no write-back); at basis updates it runs
    the functional step.  Over two cycles with ``k = 3`` its weight follows the method's
    own functional ``step`` on the same loss, with decoupled weight decay ``S, dK, dL <-
    (1 - h wd) (S, dK, dL)`` before each step, to float64 round-off (the same operations
    in the same order; 1e3 eps leaves room for the different routes of the decompositions).
    Guards the in-place path's plumbing: planted, a state not written back (``Adam``'s
    step counters), a step counter not advanced, or weight decay applied twice each
    make the two diverge."""
    import lowrank_core as lc
    from lowrank_core import training as lt

    torch.manual_seed(0)
    m, n, r, h = 9, 7, 3, 0.05
    layer = LowRankLinear(n, m, rank=r, bias=False, dtype=torch.float64)
    target = torch.randn(m, n, dtype=torch.float64)
    opts = {"rtol": 0.05, "max_rank": r} if lt.OPTIMIZERS[method].rank_adaptive else {}  # the layer's cap
    opt = LowRankOptimizer(layer.parameters(), method, h, basis_update_every=3, weight_decay=weight_decay, **opts)
    core = lt.OPTIMIZERS[method](h, basis_update_every=3, **opts)
    with torch.no_grad():
        param = core.init(lc.LowRank(*(layer._active(f).clone() for f in ("U", "S", "V"))))
    c = 1.0 - h * weight_decay
    for step in range(2 * core.cycle_length):
        opt.zero_grad()
        (0.5 * (layer.weight - target).square().sum()).backward()
        opt.step()
        grad = param.to_dense() - target  # at the weight before the step, as the backward above
        if weight_decay:
            param = param.replace(S=param.S * c, dK=param.dK * c, dL=param.dL * c)
        param = core.step(param, grad=grad)
        tol = 1e3 * torch.finfo(torch.float64).eps * float(target.norm())
        torch.testing.assert_close(layer.weight.detach(), param.to_dense(), rtol=0, atol=tol, msg=f"step {step}")
        assert opt.state[layer.S]["step"] == param.step


def test_optimizer_errors():
    model = _model()
    with pytest.raises(ValueError, match="unknown `method`"):
        LowRankOptimizer(model, "sgd", 0.1)
    with pytest.raises(ValueError, match="`lr` is required"):
        LowRankOptimizer(model, "abc-psi")
    with pytest.raises(ValueError, match="no LowRankLinear"):
        LowRankOptimizer(torch.nn.Linear(3, 3), "abc-psi", 0.1)
    with pytest.raises(ValueError, match="`rank` must satisfy"):
        LowRankLinear(3, 4, rank=5)
    opt = LowRankOptimizer(model, "abc-psi", 0.1)
    x = torch.randn(2, 12)
    model(x).sum().backward()
    model[0].dK.grad[0, 0] = float("nan")
    from lowrank_core.training import NonFiniteGradientError

    with pytest.raises(NonFiniteGradientError, match="step 0"):
        opt.step()


def test_importing_lowrank_core_does_not_import_torch():
    code = "import sys, lowrank_core, lowrank_core.training; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("method", ["abc-psi", "ra-bug"])
def test_storage_outside_the_active_block_stays_zero(method):
    """The factor storage has a fixed capacity; only the active block ``[:p]`` / ``[:q]``
    is written at each step and the rest must be exactly zero, or the forward pass (which
    reads whole buffers) and ``layer.weight`` would add stale columns.  A rank-adaptive
    run with ranks going up and down checks this after every step.  Guards against a
    write that skips zeroing the rest after a rank decrease (the step writes the same
    size most of the time and skips the zeroing then)."""
    torch.manual_seed(0)
    layer = LowRankLinear(12, 10, 3, max_rank=6, dtype=torch.float64)
    opt = LowRankOptimizer([*layer.parameters()], method, lr=0.3, rtol=0.3)
    gen = torch.Generator().manual_seed(1)
    ranks = []
    for _ in range(24):
        x = torch.randn(16, 12, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 10, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        ((layer(x) - y) ** 2).mean().backward()
        opt.step()
        ranks.append((layer._p, layer._q))
        for name in FACTORS:
            buf = getattr(layer, name).detach().clone()
            buf[layer._slices(name)] = 0
            assert torch.count_nonzero(buf) == 0, (name, ranks[-1])
    steps = list(zip([p for p, _ in ranks][:-1], [p for p, _ in ranks][1:], strict=True))
    assert any(a > b for a, b in steps), ranks  # the rank went down ...
    assert any(a < b for a, b in steps), ranks  # ... and up


def _adam_reference(m, v, g, betas, t, eps):
    """Adam's moments and bias-corrected direction in float64 NumPy, from the formula."""
    import numpy as np

    m, v, g = (np.asarray(x.detach().cpu(), dtype=np.complex128 if x.is_complex() else np.float64) for x in (m, v, g))
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = (b2 * v + (1 - b2) * np.abs(g) ** 2).real
    return m, v, (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)


@pytest.mark.parametrize("layout", ["contiguous", "column-block", "transposed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex128])
def test_adam_directions_follow_the_formula_in_every_layout(dtype, layout, monkeypatch):
    """``_inplace.adam_directions`` (low-rank Adam's moments and direction) equals the
    formula in float64 for every memory layout of the moments and gradients: real CPU
    tensors go through ``torch._fused_adam_`` (checked: it is called), which reads raw
    memory, so a strided view passed to it directly is updated wrongly and its
    neighbours in the storage are overwritten -- the bug this test guards against
    (dropping the contiguous copies fails the "column-block" and "transposed" cases).
    Complex tensors take the composed operations.  Tolerance: each entry is a few
    roundings (lerp, fused multiply-add, sqrt, division) of O(1) quantities, so 16 eps
    of the dtype relative to the entries' scale."""
    import array_api_compat

    from lowrank_core.training import _inplace

    calls = []
    fused = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: calls.append(1) or fused(*a, **k))
    gen = torch.Generator().manual_seed(4)
    real = torch.float64 if dtype == torch.complex128 else dtype
    shapes = [(9, 5), (6, 5), (5, 5)]

    def array(shape, dt, positive=False):
        x = torch.rand if positive else torch.randn
        if layout == "column-block":  # a view of the first columns of wider storage
            return x(shape[0], 2 * shape[1], generator=gen, dtype=dt)[:, : shape[1]]
        if layout == "transposed":
            return x(shape[1], shape[0], generator=gen, dtype=dt).mT
        return x(*shape, generator=gen, dtype=dt)

    ms = [array(s, dtype) for s in shapes]
    vs = [array(s, real, positive=True) for s in shapes]
    gs = [array(s, dtype) for s in shapes]
    # column blocks: the storage beyond each view, to check it stays untouched
    bases = [x._base for x in ms + vs] if layout == "column-block" else []
    outside = [b.clone() for b in bases]
    want = [_adam_reference(m, v, g, (0.9, 0.99), 3, 1e-8) for m, v, g in zip(ms, vs, gs, strict=True)]
    m_in, v_in = list(ms), list(vs)
    xp = array_api_compat.array_namespace(*gs)
    ds = _inplace.adam_directions(m_in, v_in, gs, (0.9, 0.99), 3, 3, 1e-8, xp)
    assert len(calls) == (0 if dtype.is_complex else 1)
    tol = 16 * torch.finfo(dtype).eps
    for (m_ref, v_ref, d_ref), m, v, m_out, v_out, d in zip(want, ms, vs, m_in, v_in, ds, strict=True):
        assert m_out is m  # updated in place
        assert v_out is v
        for got, ref in ((m, m_ref), (v, v_ref), (d, d_ref)):
            got = got.to(torch.complex128 if got.is_complex() else torch.float64).numpy()
            assert abs(got - ref).max() <= tol * abs(ref).max()
    for b, before in zip(bases, outside, strict=True):
        n = b.shape[1] // 2
        assert torch.equal(b[:, n:], before[:, n:])
