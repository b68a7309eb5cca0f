"""The shared helpers of the `bench/` scripts: background load, the results envelope,
and the documentation tables generated from the results files."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    """A module of bench/ (the scripts import each other's helpers as top-level modules)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_background_load_stops_its_processes_even_when_the_measurement_fails():
    """`--load N` starts N busy processes and stops (and reaps) them when the block ends,
    also when it raises.  Guards against load processes left spinning after a failed
    benchmark, which would slow every later measurement on the machine."""
    common = _load("_common")
    pids: list[int] = []

    def measure_and_fail() -> None:
        with common.background_load(2, settle=0.0) as info:
            pids.extend(info["pids"])
            assert len(pids) == 2
            assert all(_alive(pid) for pid in pids)
            msg = "measurement failed"
            raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="measurement failed"):
        measure_and_fail()
    assert not any(_alive(pid) for pid in pids)
    with common.background_load(0, settle=0.0) as idle:
        pass
    assert idle["processes"] == 0
    assert idle["cpu_share"] == []
    with pytest.raises(ValueError, match="`count`"), common.background_load(-1, settle=0.0):
        pass


def test_save_writes_the_common_envelope_with_a_reproducing_command(tmp_path, monkeypatch):
    """Guards against a results file whose command does not unset the OpenBLAS variables
    or whose load is not recorded (the README promises both)."""
    common = _load("_common")
    monkeypatch.setattr(sys, "argv", [str(BENCH / "demo_script.py"), "--load", "0", "2"])
    path = common.save("demo-script", [{"load": 0, "ms": 1.0}, {"load": 2, "ms": 1.5}], out=tmp_path / "d.json",
                       load=[0, 2], sections={"background": {"load2": {"processes": 2}}}, size=3)  # fmt: skip
    doc = json.loads(path.read_text())
    assert list(doc) == ["meta", "rows", "background"]
    meta = doc["meta"]
    assert meta["command"] == "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/demo_script.py --load 0 2"
    assert (meta["benchmark"], meta["load"], meta["loads"], meta["size"]) == ("demo-script", 2, [0, 2], 3)
    assert doc["rows"][1] == {"load": 2, "ms": 1.5}


def test_docs_tables_carry_every_row_of_their_results_file(tmp_path):
    """Each generated table has one line per results row (per method for the stacked
    solves, per problem for the QR-savings answer).  Guards against a table that drops
    rows, and against a results file whose schema the tables no longer read."""
    tables = _load("tables")
    results = BENCH / "results"
    written = tables.write_all(results, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.md" for name in tables.TABLE_BUILDERS)

    def body(name: str) -> list[str]:
        return (tmp_path / f"{name}.md").read_text().splitlines()[2:]

    def rows(name: str) -> list[dict]:
        return json.loads((results / name).read_text())["rows"]

    assert len(body("kernels")) == len(rows("kernels.json"))
    assert len(body("training_cost")) == len(rows("training_cost.json"))
    assert len(body("equal_accuracy")) == len(rows("qr_savings_equal_accuracy.json"))
    assert len(body("qr_savings")) == len({r["problem"] for r in rows("qr_savings_equal_accuracy.json")})
    assert len(body("stacked_solves")) == len({r["method"] for r in rows("stacked_solves.json")})
    step = json.loads((results / "training_step.json").read_text())
    assert len(body("training_step_idle")) == len({r["contender"] for r in step["rows"]})
    for name, entries in (("training_step_idle", step["rows"]), ("training_floor", step["floor"])):
        cells = sum(line.count(" ms (") for line in body(name))  # one "x.xx ms (y.y×)" per idle row
        assert cells == sum(r["load"] == 0 for r in entries), name
    # one line per idle row of the in-situ section; one per load and thread variant of the loaded baseline
    assert len(body("training_insitu")) == sum(r["load"] == 0 for r in step["insitu"])
    assert len(body("loaded_baseline")) == len({(r["load"], r["variant"]) for r in rows("loaded_baseline.json")})
    first = rows("kernels.json")[0]
    assert f"{first['speedup_numpy']:.2f}" in body("kernels")[0]
