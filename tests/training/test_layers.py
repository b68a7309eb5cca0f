"""Low-rank conv, embedding and adapter layers, convert/merge (issue 19, item 9).

Each layer is checked against the dense torch module with the weight its factors
represent, in float64 (so the only difference is the round-off of a different order of
products), including the factor gradients the optimizer reads; then training with every
optimizer of the library, checkpoints and pickles, torch.compile, and convert/merge
round trips.
"""

from __future__ import annotations

import pickle

import pytest

import lowrank_core.training as lt

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402, N812

from lowrank_core.training.torch import (  # noqa: E402
    ConversionSummary,
    LowRankAdapter,
    LowRankConv2d,
    LowRankEmbedding,
    LowRankLayer,
    LowRankLinear,
    LowRankOptimizer,
    convert,
    merge,
)

EPS64 = torch.finfo(torch.float64).eps


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: these layers are tiny, and on a loaded 2-core machine torch's
    intra-op threads spin (a 64x30 product took 60 ms with 2 threads, 6 us with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


F64 = torch.float64
FACTORS = ("U", "S", "V", "dK", "dL")


def _fill_increments(layer, seed=0):
    """Random dK and dL in the active block: the mid-cycle (augmented) form abc-PSI and
    RA-BUG leave in the layer, so that every term of W = U S V^T + dK V^T + U dL^T counts."""
    g = torch.Generator().manual_seed(seed)
    U, S, V = (layer._active(n).clone() for n in ("U", "S", "V"))
    dK = torch.randn(U.shape[0], V.shape[1], generator=g, dtype=U.dtype)
    dL = torch.randn(V.shape[0], U.shape[1], generator=g, dtype=U.dtype)
    layer._write(U, S + 0.1 * torch.randn(S.shape, generator=g, dtype=U.dtype), V, dK, dL)


def _factor_grads_match(layer, G):
    """dK.grad = G V, dL.grad = G^T U, S.grad = U^T G V for the matrix gradient G (m, n).

    Float64 products of O(1) entries over at most a few hundred terms: 100 eps of the
    largest entry bounds the round-off."""
    U, V = layer.U.detach(), layer.V.detach()
    for name, want in (("dK", G @ V), ("dL", G.T @ U), ("S", U.T @ G @ V)):
        got = getattr(layer, name).grad
        torch.testing.assert_close(got, want, rtol=0, atol=100 * EPS64 * max(1.0, want.abs().max().item()))


# ====================================================================== Conv2d
CONV_CASES = [
    {"padding": 1},
    {"stride": 2, "padding": (0, 2), "dilation": (2, 1)},
    {"padding": "same", "bias": False},
    {"padding": 1, "padding_mode": "reflect"},
    {"padding": (1, 2), "padding_mode": "circular", "stride": (1, 2)},
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's note on (3, 2) kernels
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_equals_dense_conv_and_gives_the_factor_gradients(case):
    """LowRankConv2d equals nn.Conv2d with the kernel W.reshape(out, in, kh, kw) (the
    factors in mid-cycle form, dK and dL non-zero) for strides, paddings (ints, pairs,
    'same', reflect and circular modes), dilations and no bias; and its backward gives
    the factor gradients of the matrix gradient G (the dense kernel's gradient reshaped
    to (out, in kh kw)).  Guards against a wrong reshape order of the first
    convolution's kernels (planted: V reshaped as (cv, kh, kw, in) -- outputs differ
    by O(1)) and against the geometry not reaching the first convolution.

    Float64: sums over in kh kw <= 60 products of O(1) terms; 1e3 eps is ample."""
    torch.manual_seed(0)
    kw = {k: v for k, v in case.items() if k != "bias"}
    layer = LowRankConv2d(4, 6, (3, 2), 3, bias=case.get("bias", True), max_rank=4, dtype=F64, **kw)
    _fill_increments(layer)
    dense = torch.nn.Conv2d(4, 6, (3, 2), bias=case.get("bias", True), dtype=F64, **kw)
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
        if dense.bias is not None:
            dense.bias.copy_(layer.bias)
    x = torch.randn(2, 4, 9, 11, dtype=F64)
    y = layer(x)
    torch.testing.assert_close(y, dense(x), rtol=0, atol=1e3 * EPS64 * dense(x).abs().max().item())
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (dense(x) * w).sum().backward()
    _factor_grads_match(layer, dense.weight.grad.reshape(6, -1))
    if layer.bias is not None:
        torch.testing.assert_close(layer.bias.grad, dense.bias.grad, rtol=0, atol=1e3 * EPS64)


def test_conv_from_conv2d_is_the_truncated_svd():
    """from_conv2d at full rank reproduces the nn.Conv2d (kernel and output) to
    round-off, and at rank r its kernel is the best rank-r approximation of the
    reshaped kernel (Eckart-Young: the error's Frobenius norm is the tail of the
    singular values).  Guards against an SVD of the wrong reshape (planted: the kernel
    permuted to (out, kh, kw, in) -- the tail norm differs)."""
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, dtype=F64)
    full = LowRankConv2d.from_conv2d(conv, 5)
    x = torch.randn(2, 3, 8, 8, dtype=F64)
    torch.testing.assert_close(full(x), conv(x), rtol=0, atol=1e3 * EPS64)
    low = LowRankConv2d.from_conv2d(conv, 2)
    s = torch.linalg.svdvals(conv.weight.detach().reshape(5, -1))
    err = torch.linalg.norm((low.weight - conv.weight).reshape(5, -1)).item()
    assert err == pytest.approx(torch.linalg.norm(s[2:]).item(), rel=1e-10)
    assert (low.stride, low.padding, low.rank) == ((2, 2), (1, 1), 2)


def test_conv_refuses_groups_and_bad_geometry():
    """groups != 1 (a grouped kernel is not one matrix), a rank above
    min(out, in kh kw), and malformed geometry raise errors naming the argument."""
    with pytest.raises(ValueError, match="`groups` must be 1"):
        LowRankConv2d(4, 4, 3, 2, groups=2)
    with pytest.raises(ValueError, match=r"`rank` .*min\(out_channels, in_channels kh kw\) = 9"):
        LowRankConv2d(1, 16, 3, 10)
    with pytest.raises(TypeError, match="`kernel_size`"):
        LowRankConv2d(2, 4, 2.5, 1)
    with pytest.raises(ValueError, match="`padding`"):
        LowRankConv2d(2, 4, 3, 1, padding="full")
    with pytest.raises(ValueError, match="`padding_mode`"):
        LowRankConv2d(2, 4, 3, 1, padding_mode="mirror")
    with pytest.raises(ValueError, match="groups=2"):
        LowRankConv2d.from_conv2d(torch.nn.Conv2d(4, 4, 3, groups=2), 2)
    with pytest.raises(TypeError, match="`conv` must be a torch.nn.Conv2d"):
        LowRankConv2d.from_conv2d(torch.nn.Linear(3, 3), 2)


# ====================================================================== Embedding
def test_embedding_equals_dense_embedding_with_padding_idx():
    """LowRankEmbedding equals nn.Embedding(padding_idx=p) with the table W (mid-cycle
    factors): equal outputs, zero output at p, and the factor gradients are those of the
    dense table's gradient, whose padding row nn.Embedding zeroes.  Guards against pad
    positions feeding gradient into the factors (planted: no mask in forward -- dK.grad
    differs by the pad row's G V) and against a pad output that is not zero."""
    torch.manual_seed(2)
    layer = LowRankEmbedding(12, 5, 3, padding_idx=4, max_rank=4, dtype=F64)
    _fill_increments(layer, seed=3)
    assert torch.equal(layer.weight[4], torch.zeros(5, dtype=F64))
    dense = torch.nn.Embedding(12, 5, padding_idx=4, dtype=F64)
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
    idx = torch.tensor([[0, 4, 7, 4], [11, 3, 4, 0]])
    y = layer(idx)
    torch.testing.assert_close(y, dense(idx), rtol=0, atol=100 * EPS64)
    assert torch.equal(y[idx == 4], torch.zeros(3, 5, dtype=F64))
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (dense(idx) * w).sum().backward()
    _factor_grads_match(layer, dense.weight.grad)


def test_embedding_without_padding_and_from_embedding():
    """Without padding_idx every row is W's (equal to nn.Embedding's lookup); from_embedding
    at full rank reproduces the table; a table with a non-zero padding row, max_norm or
    sparse gradients is refused by name."""
    torch.manual_seed(3)
    emb = torch.nn.Embedding(9, 4, dtype=F64)
    layer = LowRankEmbedding.from_embedding(emb, 4)
    idx = torch.arange(9).reshape(3, 3)
    torch.testing.assert_close(layer(idx), emb(idx), rtol=0, atol=100 * EPS64)
    bad = torch.nn.Embedding(9, 4, padding_idx=1)
    with torch.no_grad():
        bad.weight[1] = 1.0
    with pytest.raises(ValueError, match="non-zero padding row"):
        LowRankEmbedding.from_embedding(bad, 2)
    with pytest.raises(ValueError, match="max_norm"):
        LowRankEmbedding.from_embedding(torch.nn.Embedding(9, 4, max_norm=1.0), 2)
    with pytest.raises(ValueError, match="`padding_idx`"):
        LowRankEmbedding(9, 4, 2, padding_idx=9)


# ====================================================================== Adapter
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_adapter_is_base_plus_update_and_never_touches_w0(kind):
    """LowRankAdapter: at construction the output equals the base's exactly (S = 0); with
    a non-zero update (mid-cycle factors) it equals the dense module with W0 + W; after
    training steps of abc-PSI W0 and the base bias are bitwise unchanged and never got a
    gradient (requires_grad False, .grad None), while the update moved and the loss
    fell.  Guards against a trainable or decayed W0 (planted: base left trainable --
    W0 changes) and against an update applied with the wrong geometry."""
    torch.manual_seed(4)
    if kind == "linear":
        base = torch.nn.Linear(10, 6, dtype=F64)
        x = torch.randn(16, 10, dtype=F64)
    else:
        base = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1, dtype=F64)
        x = torch.randn(16, 3, 7, 7, dtype=F64)
    W0, b0 = base.weight.detach().clone(), base.bias.detach().clone()
    ad = LowRankAdapter(base, 2, max_rank=3)
    assert torch.equal(ad(x), base(x))
    _fill_increments(ad, seed=5)
    dense = F.linear(x, ad.weight, b0) if kind == "linear" else F.conv2d(x, ad.weight, b0, stride=2, padding=1)
    torch.testing.assert_close(ad(x), dense, rtol=0, atol=1e3 * EPS64)
    fresh = torch.nn.Linear(10, 6, dtype=F64) if kind == "linear" else torch.nn.Conv2d(3, 6, 3, 2, 1, dtype=F64)
    ad2 = LowRankAdapter(fresh, 2, max_rank=3)
    with torch.no_grad():
        ad2.base.weight.copy_(W0)
        ad2.base.bias.copy_(b0)
    model = torch.nn.Sequential(ad2, torch.nn.Tanh())
    g = torch.Generator().manual_seed(6)  # the target: the base with a rank-1 change of its weight
    E = 0.5 * torch.outer(torch.randn(6, generator=g, dtype=F64), torch.randn(W0[0].numel(), generator=g, dtype=F64))
    W1 = W0 + E.reshape(W0.shape)
    with torch.no_grad():
        target = torch.tanh(F.linear(x, W1, b0) if kind == "linear" else F.conv2d(x, W1, b0, stride=2, padding=1))
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.5, rtol=0.05, weight_decay=0.001)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = (model(x) - target).square().mean()
        loss.backward()
        assert ad2.base.weight.grad is None
        assert ad2.base.bias.grad is None
        losses.append(loss.item())
        opt.step()
    opt.finish_cycle()
    assert torch.equal(ad2.base.weight, W0)
    assert torch.equal(ad2.base.bias, b0)
    assert not ad2.base.weight.requires_grad
    assert ad2.delta_weight.abs().max() > 0
    assert losses[-1] < 0.7 * losses[0], losses


def test_adapter_refuses_other_modules():
    """Adapters wrap nn.Linear and nn.Conv2d (groups 1) only; the rank is bounded by the
    update's matrix."""
    with pytest.raises(TypeError, match="`base` must be a torch.nn.Linear or torch.nn.Conv2d"):
        LowRankAdapter(torch.nn.Embedding(5, 3), 1)
    with pytest.raises(TypeError, match="`base`"):
        LowRankAdapter(LowRankLinear(4, 4, 2), 1)
    with pytest.raises(ValueError, match="groups=3"):
        LowRankAdapter(torch.nn.Conv2d(3, 3, 3, groups=3), 1)
    with pytest.raises(ValueError, match="`rank`"):
        LowRankAdapter(torch.nn.Linear(4, 3), 4)


# ====================================================================== convert / merge
class _MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 6, padding_idx=0)
        self.encoder = torch.nn.Sequential()
        self.encoder.add_module("fc1", torch.nn.Linear(30, 24))
        self.encoder.add_module("act", torch.nn.Tanh())
        self.encoder.add_module("fc2", torch.nn.Linear(24, 16))
        self.head = torch.nn.Linear(16, 4)

    def forward(self, idx):
        return self.head(torch.tanh(self.encoder(self.embed(idx).flatten(1))))


def _cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 12, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(12 * 4 * 4, 10),
    )


def _inputs(kind, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        return torch.randint(0, 20, (n, 5), generator=g)
    return torch.randn(n, 1, 8, 8, generator=g)


def _truncated(model, rank):
    """A copy of the dense model whose weights are replaced by their truncated SVDs."""
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        for mod in out.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)):
                w = mod.weight.reshape(mod.weight.shape[0], -1)
                u, s, vh = torch.linalg.svd(w, full_matrices=False)
                mod.weight.copy_(((u[:, :rank] * s[:rank]) @ vh[:rank]).reshape(mod.weight.shape))
    return out


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_convert_merge_round_trip_at_full_rank(kind):
    """convert at full rank (of each matrix) and merge back: the logits of the dense,
    the converted and the merged model agree to 1e-5, the merged modules are the dense
    torch types with the same geometry, bias and padding_idx.  Float32 (what users
    convert): a full-rank SVD reconstructs W to a few eps ||W||, and logits of O(1) from
    sums of <= 200 products stay within 1e-5.  Guards against lost biases, geometry or
    padding_idx in either direction (planted: merge without the bias -- logits off by
    O(0.1))."""
    torch.manual_seed(6)
    model = _MLP() if kind == "mlp" else _cnn()
    x = _inputs(kind)
    ref = model(x).detach()
    full = {"embed": 6, "fc1": 24, "fc2": 16, "head": 4} if kind == "mlp" else {"0": 8, "2": 12, "5": 10}
    model, summary = convert(model, rank=full)  # each module at its own full rank min(m, n)
    names = summary.names
    assert names == (["embed", "encoder.fc1", "encoder.fc2", "head"] if kind == "mlp" else ["0", "2", "5"])
    if kind == "cnn":
        assert isinstance(model[2], LowRankConv2d)
        assert model[2].stride == (2, 2)
    assert all(isinstance(m, LowRankLayer) for n, m in model.named_modules() if n in ("embed", "head", "0", "5"))
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
    merged = merge(model)
    assert not any(isinstance(m, LowRankLayer) for m in merged.modules())
    if kind == "mlp":
        assert isinstance(merged.embed, torch.nn.Embedding)
        assert merged.embed.padding_idx == 0
    else:
        assert isinstance(merged[2], torch.nn.Conv2d)
        assert merged[2].stride == (2, 2)
        assert merged[2].padding == (1, 1)
    torch.testing.assert_close(merged(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_convert_at_lower_rank_is_the_truncated_svd_model(kind):
    """At rank r below full, the converted model's logits equal those of the dense model
    whose weights are replaced by their truncated SVDs, and merge keeps them (float32,
    1e-5 as above).  Guards against truncating the wrong factor or the wrong reshape
    (planted: keep the last r singular triplets -- logits differ by O(0.1))."""
    torch.manual_seed(7)
    model = _MLP() if kind == "mlp" else _cnn()
    x = _inputs(kind, seed=1)
    ref = _truncated(model, 3)(x).detach()
    model, summary = convert(model, rank=3)
    assert len(summary) == (4 if kind == "mlp" else 3)
    assert [c.rank for c in summary.layers] == [3] * len(summary)
    assert [c.factor_parameters for c in summary.layers] == [(c.shape[0] + c.shape[1]) * 3 + 9 for c in summary.layers]
    assert "dense weight entries" in str(summary)
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merge(model)(x), ref, rtol=1e-5, atol=1e-5)


def test_convert_adapter_mode_and_merge_folds_the_update():
    """convert(adapter=True) wraps the selected modules in adapters (outputs unchanged at
    the start), training moves only the updates, and merge folds W0 + W into the base
    modules, restoring their requires_grad: merged logits equal the trained adapter
    model's.  Guards against merge dropping the update (planted: returning the base as
    it is -- the logits revert to the pretrained ones)."""
    torch.manual_seed(8)
    model = _cnn()
    x, y = _inputs("cnn", seed=2), torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(3))
    before = model(x).detach()
    W0 = model[0].weight.detach().clone()
    model, summary = convert(model, rank=2, include=["0", "2"], adapter=True, max_rank=4)
    assert [c.kind for c in summary.layers] == ["adapter-conv2d", "adapter-conv2d"]
    assert torch.equal(model(x), before)
    opt = LowRankOptimizer(model.parameters(), "ra-bug", lr=0.1, rtol=0.05)
    for _ in range(6):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()  # finishes the cycle
    trained = model(x).detach()
    assert (trained - before).abs().max() > 1e-3
    assert torch.equal(model[0].base.weight, W0)
    merged = merge(model)
    assert type(merged[0]) is torch.nn.Conv2d
    assert merged[0].weight.requires_grad
    torch.testing.assert_close(merged(x), trained, rtol=1e-5, atol=1e-5)


def test_merge_finishes_an_open_cycle_first():
    """merge between basis updates finishes the cycle through the optimizer (as eval()
    does): the merged model's logits equal those of the low-rank model after
    finish_cycle (float64, round-off), and the optimizer has no open layer afterwards.
    Guards against merging the augmented factors without finishing (planted: skip the
    finish -- logits then equal the unfinished model's, which differ by the truncation)."""
    torch.manual_seed(9)
    model = torch.nn.Sequential(torch.nn.Linear(8, 12, dtype=F64), torch.nn.Tanh(), torch.nn.Linear(12, 3, dtype=F64))
    model, _ = convert(model, rank=3, include="0")
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.5, rtol=0.2)
    x, y = torch.randn(16, 8, dtype=F64), torch.randint(0, 3, (16,))
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert opt._open()
    import copy

    twin = copy.deepcopy((model, opt))
    twin[1].finish_cycle()
    finished = twin[0](x).detach()
    merged = merge(model)
    assert not opt._open()
    torch.testing.assert_close(merged(x), finished, rtol=0, atol=1e3 * EPS64)


def test_convert_bad_input_names_the_argument_and_leaves_the_model():
    """Bad input: a rank above a selected module's min(m, n) (ValueError naming `rank`
    and the module), a pattern matching nothing (ValueError naming `include`), a pattern
    matching only unsupported kinds (TypeError), a grouped convolution, an embedding
    under adapter=True; the model is left unchanged by a refused call (all checks run
    before the first replacement)."""
    model = _cnn()
    with pytest.raises(ValueError, match=r"`rank` = 9 exceeds min\(m, n\) = 8 of '0'"):
        convert(model, rank=9)
    assert type(model[0]) is torch.nn.Conv2d
    assert type(model[5]) is torch.nn.Linear
    with pytest.raises(ValueError, match="`include` pattern 'conv\\*' matches no module"):
        convert(model, rank=2, include="conv*")
    with pytest.raises(TypeError, match="`include` pattern '1' matches only modules of unsupported kinds \\(ReLU\\)"):
        convert(model, rank=2, include="1")
    with pytest.raises(ValueError, match="no module to convert"):
        convert(model, rank=2, include="0", exclude="0")
    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="module '0' \\(selected by `include`\\) has groups=2"):
        convert(grouped, rank=2)
    with pytest.raises(TypeError, match="`adapter=True`.*nn.Embedding"):
        convert(_MLP(), rank=2, adapter=True)
    with pytest.raises(TypeError, match="`include` must be"):
        convert(model, rank=2, include=3)
    with pytest.raises(TypeError, match="`model` must be a torch.nn.Module"):
        merge([model])
    converted, _ = convert(model, rank=2, include="0")
    with pytest.raises(TypeError, match="already low-rank"):
        convert(converted, rank=2, include="0")


def test_convert_rank_by_pattern():
    """A dict ``rank`` gives each module the rank of its first matching pattern (peft's
    rank_pattern); a selected module that no pattern matches, and a max_rank below a
    module's rank, are refused by name."""
    model, summary = convert(_cnn(), rank={"0": 2, "*": 4}, max_rank=6)
    assert [(c.name, c.rank, c.max_rank) for c in summary.layers] == [("0", 2, 6), ("2", 4, 6), ("5", 4, 6)]
    with pytest.raises(ValueError, match="`rank`: no pattern of \\['0'\\] matches the selected module '2'"):
        convert(_cnn(), rank={"0": 2})
    with pytest.raises(ValueError, match="`max_rank` must be at least the rank \\(4 for '2'\\)"):
        convert(_cnn(), rank={"0": 2, "*": 4}, max_rank=3)
    with pytest.raises(TypeError, match="`rank\\['0'\\]`"):
        convert(_cnn(), rank={"0": 2.0})


def test_convert_patterns_suffixes_and_exclude():
    """Patterns are fnmatch on the qualified name or a dotted suffix of it (peft's
    target_modules): 'fc*' selects encoder.fc1 and encoder.fc2, exclude removes
    matches, and modules inside a low-rank layer (an adapter's base) are never selected
    again.  A frozen module gives a frozen low-rank layer."""
    model = _MLP()
    model.head.requires_grad_(False)
    model, summary = convert(model, rank=2, include=["fc*", "head"], exclude="*fc2")
    assert summary.names == ["encoder.fc1", "head"]
    assert not model.head.S.requires_grad
    assert model.encoder.fc1.S.requires_grad
    model2, s2 = convert(_cnn(), rank=2, include="*", adapter=True, exclude="0")
    assert s2.names == ["2", "5"]
    _, s3 = convert(model2, rank=2)  # only module 0 is left dense
    assert s3.names == ["0"]
    assert isinstance(s3, ConversionSummary)


# ====================================================================== training with every optimizer
LR = {"adam": 0.03, "heavy-ball": 0.1}  # the integrator methods: 0.3


@pytest.mark.parametrize("method", sorted(lt.OPTIMIZERS))
@pytest.mark.parametrize("setup", ["cnn", "adapter", "mlp"])
def test_every_optimizer_trains_converted_models(method, setup):
    """Every optimizer of the library trains a converted CNN (LowRankConv2d layers), a
    CNN with conv adapters, and the MLP with a LowRankEmbedding (all its modules
    low-rank), on labels of a teacher network: 25 steps on a fixed batch lower the loss
    by a quarter (measured: to 0.003-0.62 of the start), every low-rank layer's weight
    moves, and the layers keep their Parameter objects (the optimizer needs no
    per-layer code).  Guards against a layer whose factors the optimizer does not
    recognise (planted: the conv factors not registered -- the optimizer refuses the
    parameters, as it finds no low-rank layer) or whose gradients are not the factor
    gradients (training stalls)."""
    torch.manual_seed(10)
    if setup == "mlp":
        model, _ = convert(_MLP(), rank=3, max_rank=5)
    else:
        model, _ = convert(_cnn(), rank=3, include=["0", "2"], adapter=setup == "adapter", max_rank=5)
    torch.manual_seed(99)
    teacher = _MLP() if setup == "mlp" else _cnn()
    x = _inputs("mlp" if setup == "mlp" else "cnn", n=64, seed=4)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    layers = [m for m in model.modules() if isinstance(m, LowRankLayer)]
    ids = [id(m.S) for m in layers]
    before = [m.weight.detach().clone() for m in layers]
    opt = LowRankOptimizer(model.parameters(), method, lr=LR.get(method, 0.3))
    assert len(opt.layers) == len(layers)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < 0.75 * losses[0], losses
    opt.finish_cycle()
    for m, w in zip(layers, before, strict=True):
        assert (m.weight - w).abs().max() > 1e-4, type(m).__name__
    assert [id(m.S) for m in layers] == ids


# ====================================================================== checkpoints, pickles, compile
def _layers():
    torch.manual_seed(11)
    return [
        (LowRankConv2d(3, 5, 3, 2, padding=1, max_rank=3, dtype=F64), torch.randn(2, 3, 6, 6, dtype=F64)),
        (LowRankEmbedding(10, 4, 2, padding_idx=1, max_rank=3, dtype=F64), torch.tensor([[1, 2, 9], [0, 1, 3]])),
        (LowRankAdapter(torch.nn.Conv2d(3, 5, 3, dtype=F64), 2, max_rank=3), torch.randn(2, 3, 6, 6, dtype=F64)),
        (LowRankAdapter(torch.nn.Linear(6, 5, dtype=F64), 2, max_rank=3), torch.randn(4, 6, dtype=F64)),
    ]


@pytest.mark.parametrize("i", range(4), ids=["conv", "embedding", "adapter-conv", "adapter-linear"])
def test_state_dict_and_pickle_round_trip(i):
    """After training steps that leave a cycle open, a pickled copy and a fresh layer
    loaded from state_dict() compute the same outputs bitwise as the original (whose
    state_dict() finished the cycle), keep their configuration (geometry, padding_idx,
    the adapter's base) and are recognised by a new optimizer.  Guards against a load
    that does not restore the active rank (planted: load_state_dict without setting
    (p, q) -- the fresh layer reports another rank) and against checkpoints of the
    unfinished form."""
    layer, x = _layers()[i]
    opt = LowRankOptimizer(layer.parameters(), "abc-psi", lr=0.1, rtol=0.1)
    for _ in range(1):
        opt.zero_grad()
        layer(x).square().mean().backward()
        opt.step()
    assert opt._open()
    sd = layer.state_dict()  # finishes the cycle
    assert not opt._open()
    copy = pickle.loads(pickle.dumps(layer))
    fresh = _layers()[i][0]
    fresh.load_state_dict(sd)
    for other in (copy, fresh):
        assert torch.equal(other(x), layer(x))
        assert other.extra_repr() == layer.extra_repr()
        assert len(LowRankOptimizer(other.parameters(), "abc-psi", lr=0.1).layers) == 1


def test_bfloat16_conv_trains_in_float32():
    """A bfloat16 LowRankConv2d trains with abc-PSI (factorisations in float32, factors
    stored in bfloat16): the loss falls and the factors stay bfloat16.  Guards against
    the conv forward mixing dtypes (planted: a float32 kernel -- conv2d raises)."""
    torch.manual_seed(12)
    model = torch.nn.Sequential(LowRankConv2d(2, 6, 3, 2, max_rank=3, dtype=torch.bfloat16), torch.nn.Flatten())
    x = torch.randn(16, 2, 5, 5, dtype=torch.bfloat16)
    target = torch.randn(16, 54, dtype=torch.bfloat16)
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.5, rtol=0.05)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = (model(x) - target).float().square().mean()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < losses[0]
    assert all(getattr(model[0], n).dtype == torch.bfloat16 for n in FACTORS)


def test_torch_compile_compiles_conv_once_across_rank_changes():
    """A CNN with LowRankConv2d layers is compiled once over 12 abc-PSI steps whose
    ranks change (fixed factor shapes, no rank-dependent Python values in forward):
    a counting backend sees one graph.  Guards against a conv forward that slices by
    the active rank (planted: it gives a graph per rank)."""
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch.manual_seed(13)
    model = torch.nn.Sequential(
        LowRankConv2d(1, 8, 3, 2, padding=1, max_rank=6),
        torch.nn.Tanh(),
        LowRankConv2d(8, 8, 3, 2, stride=2, max_rank=6),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 3 * 3, 3),
    )
    compiled = torch.compile(model, backend=backend)
    opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.5, rtol=0.05)
    ranks = set()
    g = torch.Generator().manual_seed(14)
    for _ in range(12):
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(compiled(x), y).backward()
        opt.step()
        ranks.add(tuple(m.rank for m in opt.layers))
    assert len(ranks) > 1
    assert len(graphs) == 1
    torch._dynamo.reset()
