"""The code examples in docs/ run (one test per page; CuPy-only blocks skip cleanly)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_spec = importlib.util.spec_from_file_location("check_examples", DOCS / "check_examples.py")
check_examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_examples)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_doc_examples_run(page, capsys):
    passed, failed, skipped, _ = check_examples.run_page(DOCS / page, verbose=False)
    report = capsys.readouterr().out
    assert failed == 0, report
    assert passed + skipped > 0 or page == "index.md" or "```python" not in (DOCS / page).read_text()
