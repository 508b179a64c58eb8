"""The gateway's security suite, indexed by the OWASP API Security Top 10 (2023). Each test of test_owasp_*.py is
named ``test_apiN_...`` and its docstring starts with its id; tests written before the suite count too and are
listed here rather than repeated.

| id    | risk                                            | tests                                                     |
|-------|-------------------------------------------------|-----------------------------------------------------------|
| API1  | Broken Object Level Authorization               | test_owasp_authz.py; test_object_level.py                 |
| API2  | Broken Authentication                           | test_owasp_auth.py; test_auth.py (expired, forged,        |
|       |                                                 | alg=none, HS512, issuer, lockout, refresh reuse)          |
| API3  | Broken Object Property Level Authorization      | test_owasp_data.py (exposure, mass assignment)            |
| API4  | Unrestricted Resource Consumption               | test_owasp_abuse.py; test_auth.py (rates), test_app.py    |
|       |                                                 | (413)                                                     |
| API5  | Broken Function Level Authorization             | test_owasp_authz.py; test_route_matrix.py (route x role)  |
| API6  | Unrestricted Access to Sensitive Business Flows | test_owasp_abuse.py (control under the identity rate;     |
|       |                                                 | orders pass the worker's risk engine)                     |
| API7  | Server Side Request Forgery                     | test_owasp_config.py                                      |
| API8  | Security Misconfiguration                       | test_owasp_config.py (with injection); test_app.py        |
|       |                                                 | (headers, CORS, 500s); test_docs.py (offline docs, CSP)   |
| API9  | Improper Inventory Management                   | test_owasp_config.py                                      |
| API10 | Unsafe Consumption of APIs                      | test_owasp_config.py (a hostile worker)                   |
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

HERE = Path(__file__).parent
IDS = [f"API{i}" for i in range(1, 11)]


def _suite() -> dict[str, tuple[str, str]]:
    """test name -> (file, docstring) of every test function in test_owasp_*.py."""
    out = {}
    for path in sorted(HERE.glob("test_owasp_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out[node.name] = (path.name, ast.get_docstring(node) or "")
    return out


def test_every_owasp_id_has_tests_and_every_test_names_its_id():
    suite = {name: v for name, v in _suite().items() if v[0] != Path(__file__).name}
    assert len(suite) >= 30
    for name, (file, doc) in suite.items():
        found = re.match(r"test_api(\d+)_", name)
        assert found, f"{file}: {name} does not start with test_apiN_"
        assert doc.startswith(f"API{found.group(1)}"), f"{file}: {name}'s docstring does not start with its id"
    covered = {"API" + re.match(r"test_api(\d+)_", n).group(1) for n in suite}
    assert covered == set(IDS), sorted(set(IDS) - covered)
    for file in {"test_object_level.py", "test_auth.py", "test_route_matrix.py", "test_app.py", "test_docs.py"}:
        assert (HERE / file).exists(), f"the index above names {file}"
