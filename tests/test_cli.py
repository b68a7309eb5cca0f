"""The command line `lowrank-core`: outputs of `bench`, `demo`, and one-line argument errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lowrank_core.__main__ import main
from lowrank_core.bench import _kernels
from lowrank_core.integrators import METHODS

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib", reason="the bench subcommands need the `bench` extra")
pytest.importorskip("tqdm", reason="the bench subcommands need the `bench` extra")

# A tiny run: one cheap problem, two methods, one step size (5 steps).
TINY = ["bench", "qr-savings", "--quick", "--problem", "quadratic", "--methods", "ksl", "abc-psi", "--dt", "1.0"]


def _assert_pngs(paths):
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC, path


def test_bench_qr_savings_quick_writes_json_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "results"
    assert main([*TINY, "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no progress bar
    assert "abc-psi" in captured.out
    assert "ksl" in captured.out
    doc = json.loads((out / "qr_savings.json").read_text())
    rows = doc["rows"]
    assert [(r["problem"], r["method"], r["dt"]) for r in rows] == [
        ("quadratic", "ksl", 1.0),
        ("quadratic", "abc-psi", 1.0),
    ]
    abc = rows[1]
    assert abc["status"] == "ok"
    assert abc["steps"] == 5
    assert abc["qr"] == 5  # one QR per step
    assert abc["qr_shapes"] == {"60x10": 5}  # [K1, U0]: 2r columns
    assert abc["svd_shapes"] == {"40x10": 5}  # one n x 2r SVD per step
    assert abc["decompositions"] == 10
    assert abc["flops"] == abc["qr_flops"] + abc["svd_flops"]
    assert abc["rhs_evals"] == 5
    assert 0 < abc["error"] < 1
    assert abc["best_error"] <= abc["error"]
    # equal rank: the rank-adaptive method is capped at the fixed rank r = 5 of ksl
    assert abc["step_ranks"] == [5, 5, 5, 5, 5, 5]
    assert [r["equal_rank"] for r in rows] == [True, True]
    assert 0 <= abc["warmup_time"]
    meta = doc["meta"]
    assert meta["backend"] == "numpy"
    assert meta["equal_rank"] == [
        {"problem": "quadratic", "rank": 5, "dts": [1.0], "all_dts": [1.0], "methods": ["ksl", "abc-psi"]}
    ]
    # both methods reach the same error, so both meet the target at their only step size
    assert [(r["method"], r["dt"], r["decompositions"]) for r in meta["equal_accuracy"]] == [
        ("ksl", 1.0, 10),
        ("abc-psi", 1.0, 10),
    ]
    accuracy = json.loads((out / "qr_savings_equal_accuracy.json").read_text())["rows"]
    assert accuracy == meta["equal_accuracy"]
    with (out / "qr_savings.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["method"] for r in table] == ["ksl", "abc-psi"]
    assert table[1]["qr_shapes"] == "60x10:5"
    assert table[1]["equal_rank"] == "True"
    assert "step_ranks" not in table[0]
    assert "equal accuracy" in captured.out
    assert "every method ends at rank 5 at dt = 1" in captured.out
    names = ["error_vs_dt", "error_vs_flops", "error_vs_qr_count", "error_vs_wall_time", "equal_accuracy",
             "rank_vs_t"]
    _assert_pngs([out / f"qr_savings_{n}.png" for n in names])


def test_bench_shows_progress_unless_quiet(tmp_path, capsys):
    assert main([*TINY, "--methods", "ksl", "--out", str(tmp_path)]) == 0
    assert "solve" in capsys.readouterr().err  # the tqdm bar, on stderr


def test_bench_kernels_cli_plumbing(tmp_path, capsys, monkeypatch):
    """Tests the CLI plumbing of `bench kernels` only: the kernel benchmark is a tiny fake.

    The real kernel benchmark (`lowrank_core.bench.kernels`) is tested in test_bench.py.
    """
    calls = []

    def fake_kernel_benchmark(*, ops, cases, dtypes, repeat, quick, progress):
        calls.append({"ops": ops, "cases": cases, "dtypes": dtypes, "repeat": repeat, "quick": quick})
        rows = []
        for i, (op, dtype, B) in enumerate([(op, dt, B) for op in ops for dt in dtypes for B in (8, 64)]):
            progress(i, 2 * len(ops) * len(dtypes), f"{op} {dtype} B={B}")
            rows.append({
                "op": op, "B": B, "m": 100, "k": 16, "dtype": dtype, "algorithm": "fake",
                "ms_kernel": 0.5 * B / 8, "ms_numpy": 1.0 * B / 8, "ms_scipy_loop": None if op == "svd" else 2.0,
                "speedup_numpy": 2.0, "speedup_scipy_loop": None if op == "svd" else 4.0 * 8 / B,
                "max_orth_error": 1e-15, "max_recon_error": 2e-15,
            })
        return rows

    monkeypatch.setattr(_kernels, "run", fake_kernel_benchmark)
    args = ["--quick", "--quiet", "--repeat", "2", "--dtypes", "float64", "--out", str(tmp_path)]
    code = main(["bench", "kernels", *args])
    assert code == 0
    assert calls == [{"ops": ("qr", "svd"), "cases": None, "dtypes": ("float64",), "repeat": 2, "quick": True}]
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "fake" in captured.out
    assert len(json.loads((tmp_path / "kernels.json").read_text())["rows"]) == 4
    assert (tmp_path / "kernels.csv").read_text().startswith("op,B,m,k,dtype,algorithm,")
    _assert_pngs([tmp_path / "kernels_speedup.png", tmp_path / "kernels_time.png"])


def test_demo_tells_what_happened(capsys):
    assert main(["demo", "--problem", "quadratic", "--dt", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "What happened" in out
    assert "QR decompositions   5 = 5×(60x10): 1 per step" in out
    assert "max_rank = 5 (the rank of the fixed-rank methods)" in out
    assert "is not included" in out  # the warm-up (compilation) is reported apart from the solve
    for name in METHODS:
        if name != "abc-psi":
            assert f"\n{name} " in out


def _one_line_error(code, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None)
    assert len(lines) == 1, err
    assert lines[0].startswith("lowrank-core")
    assert "error" in lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bench", "qr-savings", "--problem", "nope"], "invalid choice: 'nope'"),
        (["bench", "qr-savings", "--methods", "ksl", "rk45"], "invalid choice: 'rk45'"),
        (["bench", "qr-savings", "--dt", "-0.1"], "must be a positive number; got '-0.1'"),
        (["bench", "qr-savings", "--dt", "fast"], "must be a positive number; got 'fast'"),
        (["bench", "qr-savings", "--dt", "nan"], "must be a positive number"),
        (["bench", "qr-savings", "--problem", "quadratic", "--dt", "100"], "larger than the time span"),
        (["bench", "qr-savings", "--backend", "jax"], "invalid choice: 'jax'"),
        (["bench", "qr-savings", "--device", "cuda"], "runs on the CPU only"),
        (["bench", "qr-savings", "--bogus"], "unrecognized arguments: --bogus"),
        (["bench"], "choose a benchmark"),
        (["bench", "kernels", "--repeat", "0"], "must be a positive integer"),
        (["demo", "--method", "nope"], "invalid choice: 'nope'"),
        (["demo", "--problem", "heat", "--dt", "1"], "larger than the time span"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_argument_errors_are_one_line(args, expected, tmp_path, capsys):
    code = main([*args, "--out", str(tmp_path)] if args[:1] == ["bench"] and len(args) > 1 else args)
    line = _one_line_error(code, capsys.readouterr().err)
    assert expected in line


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main([*TINY, "--out", str(blocker / "results")])
    line = _one_line_error(code, capsys.readouterr().err)
    assert "cannot write results to --out" in line
    code = main([*TINY, "--out", str(blocker)])
    assert "is an existing file" in _one_line_error(code, capsys.readouterr().err)


def test_uninstalled_backend_is_one_line(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    code = main(["demo", "--backend", "torch"])
    line = _one_line_error(code, capsys.readouterr().err)
    assert 'pip install "lowrank-core[torch]"' in line


def test_missing_bench_extra_names_the_extra(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a))
    code = main(TINY)
    line = _one_line_error(code, capsys.readouterr().err)
    assert code == 1
    assert 'python -m pip install "lowrank-core[bench]"' in line


def test_python_dash_m_prints_one_line_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "lowrank_core", "bench", "qr-savings", "--dt", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    _one_line_error(proc.returncode, proc.stderr)
