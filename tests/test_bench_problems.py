"""`lowrank-core bench problems`: the physics diagnostics of the kinetic and PDE problems."""

from __future__ import annotations

import csv
import json
import math

import pytest

from lowrank_core.__main__ import main
from lowrank_core.bench import _problems as _bench_problems
from lowrank_core.integrators import METHODS
from lowrank_core.problems import PROBLEMS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib", reason="the bench subcommands need the `bench` extra")
pytest.importorskip("tqdm", reason="the bench subcommands need the `bench` extra")


def _finite(values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`lowrank-core bench problems --quick` once for the module: (exit code, out dir, JSON)."""
    out = tmp_path_factory.mktemp("bench-problems")
    code = main(["bench", "problems", "--quick", "--quiet", "--out", str(out)])
    doc = json.loads((out / "problems.json").read_text()) if code == 0 else None
    return code, out, doc


def test_quick_run_covers_every_problem_with_conserved_quantities(quick_run):
    """Every registered problem with a non-empty `conserved` runs with every default method.

    Guards against a registry filter that drops problems (e.g. testing `conserved is not
    None`, or reading only the problems known when the command was written).
    """
    code, _, doc = quick_run
    assert code == 0
    expected = [name for name in PROBLEMS if _bench_problems._build(name, quick=True).conserved]
    assert expected  # the Schrödinger problem at least
    pairs = [(r["problem"], r["method"]) for r in doc["rows"]]
    assert pairs == [(p, m) for p in expected for m in _bench_problems.DEFAULT_METHODS]
    assert doc["meta"]["benchmark"] == "problems"
    assert doc["meta"]["quick"] is True


def test_trajectories_are_finite_and_drifts_start_at_zero(quick_run):
    """Each row holds one finite value per saved time for every conserved quantity, its
    drift is `(q - q(Y0)) / |q(Y0)|` (or `q - q(Y0)` when `|q(Y0)| <= ABSOLUTE_BELOW`),
    and the rank trajectory has one entry per time.

    Guards against a drift measured from the wrong reference value (the final state, or
    the reference solution instead of `Y0`), a missing per-step evaluation, and NaN
    diagnostics written silently.
    """
    _, _, doc = quick_run
    for r in doc["rows"]:
        assert r["status"] == "ok", r["status"]
        n = r["steps"] + 1
        assert len(r["t"]) == len(r["rank"]) == n
        assert r["t"][0] == r["t0"]
        assert r["t"][-1] == pytest.approx(r["t1"])
        assert all(1 <= k <= 2 * r["rank0"] for k in r["rank"])
        if not METHODS[r["method"]].rank_adaptive:
            assert set(r["rank"]) == {r["rank0"]}
        assert r["conserved"]
        for q in r["conserved"]:
            values, drift = r[f"q_{q}"], r[f"drift_{q}"]
            assert len(values) == len(drift) == n
            assert _finite(values)
            assert _finite(drift)
            q0 = values[0]
            scale = abs(q0) if r[f"drift_kind_{q}"] == "relative" else 1.0
            assert (r[f"drift_kind_{q}"] == "relative") == (abs(q0) > _bench_problems.ABSOLUTE_BELOW)
            # the same subtraction and division as the command: equal to round-off
            assert drift == pytest.approx([(v - q0) / scale for v in values], rel=1e-12, abs=0.0)
            assert drift[0] == 0.0
            assert r[f"max_drift_{q}"] == max(abs(d) for d in drift)


def test_electric_energy_rows_carry_the_linear_rate(quick_run):
    """Problems with an electric energy record it at every time (positive, finite) with the
    problem's linear-theory rate and a fitted rate (finite, or None when a quick run's
    growth phase has fewer than 3 points).

    Guards against the energy or the rate being dropped from the JSON the plots read.
    """
    _, _, doc = quick_run
    for r in doc["rows"]:
        built = _bench_problems._build(r["problem"], quick=True)
        if not callable(getattr(built, "electric_energy", None)):
            assert "electric_energy" not in r
            continue
        energy = r["electric_energy"]
        assert len(energy) == r["steps"] + 1
        assert _finite(energy)
        assert min(energy) > 0
        assert r["linear_rate"] == pytest.approx(float(built.linear_rate))
        assert r["rate"] is None or math.isfinite(r["rate"])


def test_plots_and_csv_are_written(quick_run):
    """The PNG figures and the CSV summary exist; the CSV has no trajectory columns.

    Guards against a figure silently skipped (e.g. the drift figure when a quantity's
    drift is zero) and per-step lists flattened into the CSV.
    """
    _, out, doc = quick_run
    names = ["problems_drift.png", "problems_rank.png"]
    if any("electric_energy" in r for r in doc["rows"]):
        names.append("problems_electric_energy.png")
    for name in names:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    with (out / "problems.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(doc["rows"])
    assert "t" not in table[0]
    assert "rank" not in table[0]
    for q in doc["rows"][0]["conserved"]:
        assert float(table[0][f"max_drift_{q}"]) == doc["rows"][0][f"max_drift_{q}"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--problem", "nope"], "unknown problem 'nope'"),
        (["--problem", "quadratic"], "problem 'quadratic' has no conserved quantities"),
        (["--methods", "rk45"], "invalid choice: 'rk45'"),
        (["--rtol", "0"], "must be a positive number; got '0'"),
    ],
)
def test_argument_errors_are_one_line(args, expected, tmp_path, capsys):
    """A bad `--problem`, `--methods` or `--rtol` is one line on stderr with status 2.

    Guards against a traceback from deep in the run (the problem names are only checked
    once the registry is read).
    """
    code = main(["bench", "problems", "--quick", "--quiet", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert "Traceback" not in err
