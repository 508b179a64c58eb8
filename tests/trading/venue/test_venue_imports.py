"""The venue, portfolio and execution code stay pure: standard library, numpy, polars, cvxpy, trading only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FILES = [*sorted((ROOT / "trading" / "venue").glob("*.py")), *sorted((ROOT / "trading" / "execution").glob("*.py")),
         ROOT / "trading" / "ledger.py"]
ALLOWED = set(sys.stdlib_module_names) | {"numpy", "polars", "cvxpy", "trading"}


def test_only_allowed_imports():
    assert len(FILES) >= 8
    for f in FILES:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]] if node.level == 0 else []
            else:
                continue
            for r in roots:
                assert r in ALLOWED, f"{f.relative_to(ROOT)} imports {r}"
