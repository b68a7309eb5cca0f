"""The public benchmark functions of `lowrank_core.bench`: what they return, what they
write (the common results envelope), and their argument checks."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from lowrank_core import bench
from lowrank_core.bench import _kernels


def test_kernels_rejects_bad_arguments_and_measures_a_tiny_case():
    """Guards against a kernel benchmark that accepts an unknown operation or a zero
    repeat (it would time nothing), or whose factors are not orthonormal.

    The orthonormality bound: Householder QR of a 20 x 4 matrix loses at most a small
    multiple of ``m * eps`` (Higham, Thm. 19.4), so ``8 m eps`` is generous and still far
    below what a wrong factor gives (O(1))."""
    with pytest.raises(ValueError, match="'ops'"):
        bench.kernels(ops=("lu",))
    with pytest.raises(ValueError, match="'repeat'"):
        bench.kernels(repeat=0)
    res = bench.kernels(ops=("qr",), cases={"qr": [(3, 20, 4)]}, dtypes=("float64",), repeat=1)
    assert [(r["op"], r["B"], r["m"], r["k"]) for r in res.rows] == [("qr", 3, 20, 4)]
    assert res.rows[0]["max_orth_error"] <= 8 * 20 * np.finfo(np.float64).eps
    assert res.files == ()
    assert res.meta["environment"] == bench.kernel_environment()


def test_time_rounds_interleaves_contenders_after_one_warm_up():
    """Round i runs every contender once, in order, after one warm-up call each.

    Guards against timing one contender's rounds in a block and then the next's (a
    machine-load drift then biases their ratio), and against a missing warm-up (the
    first round would carry the compilation)."""
    calls = []
    times = bench.time_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=3)
    assert calls == ["a", "b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_results_envelope_is_meta_then_rows_then_sections(tmp_path):
    """`metadata` + `write_results` write the envelope every results file shares.

    Guards against a results file whose rows cannot be read back as written, or
    whose metadata lacks the benchmark, command, date or load (the docs' tables and
    the bench README rely on these keys)."""
    meta = bench.metadata("demo-bench", command="python bench/x.py --load 2", load=2, size=7)
    rows = [{"case": 1, "ms": 0.5, "trace": [1.0, 2.0]}, {"case": 2, "ms": 0.25, "trace": []}]
    paths = bench.write_results(rows, tmp_path, "demo_bench", meta, background={"idle": 1.0})
    assert [p.name for p in paths] == ["demo_bench.json", "demo_bench.csv"]
    doc = json.loads(paths[0].read_text())
    assert list(doc) == ["meta", "rows", "background"]
    assert doc["rows"] == rows
    assert doc["background"] == {"idle": 1.0}
    for key in ("benchmark", "command", "date", "load", "lowrank_core", "python", "numpy", "cpu_count"):
        assert key in doc["meta"], key
    assert (doc["meta"]["benchmark"], doc["meta"]["load"], doc["meta"]["size"]) == ("demo-bench", 2, 7)
    assert paths[1].read_text().splitlines() == ["case,ms", "1,0.5", "2,0.25"]  # lists left out of the CSV
    only_json = bench.write_results(rows, tmp_path, "no_csv", meta, csv_file=False)
    assert [p.name for p in only_json] == ["no_csv.json"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"benchmark": ""}, TypeError, "`benchmark`"),
        ({"benchmark": "x", "load": -1}, ValueError, "`load`"),
        ({"benchmark": "x", "load": 1.5}, ValueError, "`load`"),
    ],
)
def test_metadata_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        bench.metadata(**kwargs)


def test_out_must_be_a_path(tmp_path):
    """Guards against a benchmark that runs for minutes and then fails to write: `out`
    is checked before anything runs."""
    with pytest.raises(TypeError, match="`out`"):
        bench.kernels(out=3)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="existing file"):
        bench.training_cost(out=blocker)


def test_training_cost_result_pickles_and_records_its_call(tmp_path):
    """A `BenchResult` pickles (every public object does), lists the files it wrote, and
    its metadata names the Python call when no command line was given.

    Guards against results whose `command` cannot reproduce them (it used to be built
    from `sys.argv` alone, which names pytest here)."""
    res = bench.training_cost(layers=[(40, 30)], ranks=[4], optimizers=["psi"], repeat=1, out=tmp_path)
    assert [p.name for p in res.files] == ["training_cost.json", "training_cost.csv"]
    assert res.meta["command"] == (
        "lowrank_core.bench.training_cost(layers=((40, 30),), ranks=(4,), optimizers=['psi'], repeat=1)"
    )
    assert [(r["layer"], r["optimizer"]) for r in res.rows] == [("40x30", "psi")]
    doc = json.loads((tmp_path / "training_cost.json").read_text())
    assert doc["meta"]["benchmark"] == "training-cost"
    assert len(doc["rows"]) == len(res.rows)
    back = pickle.loads(pickle.dumps(res))
    assert back == res
    with pytest.raises(ValueError, match="`repeat`"):
        bench.training_cost(repeat=0)
    with pytest.raises(ValueError, match="`ranks`"):
        bench.training_cost(ranks=[0])
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        bench.training_cost(layers=[(40, 30)], ranks=[4], optimizers=["sgd"])


def test_kernel_benchmark_lives_outside_the_kernels_package():
    """`lowrank_kernels` never imports `lowrank_core`: the kernel benchmark (which records
    lowrank_core's metadata) lives in `lowrank_core.bench`, and the kernels package has
    no benchmark module left.  Guards against the two homes coming back."""
    import importlib.util

    assert importlib.util.find_spec("lowrank_kernels.benchmark") is None
    assert _kernels.run.__module__ == "lowrank_core.bench._kernels"
