"""Imports run one way: the domain at the bottom, then storage and ml, then assets and streaming, then
orchestration and the embedded stack on top (docs/ARCHITECTURE.md). Read from the source with `ast`, so
every import counts: top-level, inside functions, `from . import x`, and lazy imports named in strings
(importlib.import_module("x"), or "pkg.module:attr" tables next to an import_module call, as the CLI keeps).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module (or package prefix) -> layer; a module may import its own layer and any layer below.
LAYERS = {
    "trading": 0,           # the domain
    "deploy.settings": 1,   # configuration: for layers 1-3, never the domain
    "deploy.secrets": 1,    # the key store and the mode check, beside the configuration
    "deploy.redaction": 1,  # masking credentials in logs: every process installs it
    "deploy.dbroles": 1,    # the database roles' names, passwords and URLs, which the settings hand out
    "deploy.errors": 1,
    "deploy.certs": 1,      # a lab's self-signed certificate (`tradeloop certs`)
    "storage": 1,           # the schema (migrations) and every query on the system of record
    "ml": 1,
    "assets": 2,
    "streaming": 2,
    "orchestration": 3,     # Dagster definitions, jobs, schedules, sensors, the CLI
    "deploy.stack": 3,      # the embedded one-machine stack
    "benchmarks": 4,        # unrestricted: may import anything, nothing imports them
    "tests": 4,
}
# imports inside one layer that are still forbidden: importer -> what it must not import
SIDEWAYS = {
    "storage": {"ml"},
    "assets": {"streaming"},
    "streaming": {"assets"},
    "deploy.settings": {"storage", "ml"},
    "deploy.secrets": {"storage", "ml"},
    "deploy.redaction": {"storage", "ml"},
    "deploy.dbroles": {"storage", "ml"},
    "deploy.certs": {"storage", "ml"},
    # the stack starts processes; it runs their code in those processes (python -m ...), never imports it
    "deploy.stack": {"assets", "streaming"},
}
# the domain talks to no framework, database, network, tracking server or exchange, and to no other layer
DOMAIN = "trading"
DOMAIN_FORBIDDEN = ("dagster", "dagster_*", "faust", "sqlalchemy", "psycopg", "psycopg2", "sqlite3", "requests",
                    "httpx", "urllib.request", "http.client", "socket", "aiohttp", "aiokafka", "mlflow", "ccxt",
                    "ib_async", "deploy", "storage", "ml", "assets", "streaming", "orchestration")
DOMAIN_ALLOWED = set(sys.stdlib_module_names) | {"numpy", "polars", "cvxpy", "yaml", DOMAIN}


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    importer: str  # dotted module name of the file
    target: str    # dotted name imported (a module where it resolves to one)

    def where(self, root: Path) -> str:
        return f"{self.file.relative_to(root).as_posix()}:{self.line}"


# --- reading imports ---------------------------------------------------------------------------------

def module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(root: Path, top: str | None = None) -> list[Path]:
    base = root / top if top else root
    return sorted(p for p in base.rglob("*.py")
                  if not any(part.startswith(".") or part in ("build", "dist", "__pycache__", "target")
                             for part in p.relative_to(root).parts))


def imports_of(root: Path, file: Path, modules: set[str]) -> list[Import]:
    """Every import in `file`, wherever it is written; `modules`: the project's dotted module names."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    me = module_name(root, file)
    package = me if file.name == "__init__.py" else me.rpartition(".")[0]
    tops = {m.split(".")[0] for m in modules}
    found: set[tuple[int, str]] = set()
    lazy = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, package)
            for alias in node.names:
                # `from pkg import module` imports pkg.module; `from urllib import request` is urllib.request
                child = f"{base}.{alias.name}"
                found.add((node.lineno, child if child in modules or base.split(".")[0] not in tops else base))
        elif isinstance(node, ast.Call) and _call_name(node) in ("import_module", "__import__"):
            lazy = True
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                name = node.args[0].value
                found.add((node.lineno, _absolute(name.lstrip("."), len(name) - len(name.lstrip(".")), package)))
    if lazy:  # names of modules to import later, kept as data ("orchestration.cli.ml:retrain")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value.split(":")[0]
                if name in modules and name != me:
                    found.add((node.lineno, name))
    return [Import(file, line, me, target) for line, target in sorted(found)]


def _absolute(module: str, level: int, package: str) -> str:
    if not level:
        return module
    base = package.split(".")
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def project_modules(root: Path) -> set[str]:
    return {module_name(root, f) for f in python_files(root)}


# --- the rules ---------------------------------------------------------------------------------------

def place(name: str, layers: dict[str, int]) -> str | None:
    """The LAYERS key a dotted module name falls under (longest prefix), or None."""
    keys = [k for k in layers if name == k or name.startswith(k + ".")]
    return max(keys, key=len) if keys else None


def _is_empty_package(file: Path) -> bool:
    # a package __init__ holding only a docstring (and `from __future__`) places nothing
    body = ast.parse(file.read_text(encoding="utf-8")).body
    return file.name == "__init__.py" and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
        or isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in body)


def layer_violations(root: Path, layers: dict[str, int] = LAYERS,
                     sideways: dict[str, set[str]] = SIDEWAYS) -> list[str]:
    """One line per import that runs up the layers (or sideways where forbidden), or per unplaced module."""
    modules = project_modules(root)
    tops = {m.split(".")[0] for m in modules}
    problems = []
    for file in python_files(root):
        me = module_name(root, file)
        mine = place(me, layers)
        if mine is None:
            if not _is_empty_package(file):
                problems.append(f"{file.relative_to(root).as_posix()}:1: {me} has no layer: add it to LAYERS")
            continue
        for imp in imports_of(root, file, modules):
            if imp.target.split(".")[0] not in tops:
                continue  # third-party or standard library
            theirs = place(imp.target, layers)
            if theirs is None:
                if not (imp.target in modules and _is_empty_package(_file_of(root, imp.target))):
                    problems.append(f"{imp.where(root)}: {me} imports {imp.target}, which has no layer")
            elif layers[theirs] > layers[mine]:
                problems.append(f"{imp.where(root)}: {me} (layer {layers[mine]}, {mine}) imports {imp.target} "
                                f"(layer {layers[theirs]}, {theirs}): imports must not run up the layers")
            elif theirs in sideways.get(mine, ()):
                problems.append(f"{imp.where(root)}: {me} imports {imp.target}: {mine} must not import {theirs}")
    return problems


def _file_of(root: Path, module: str) -> Path:
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def domain_violations(root: Path, domain: str = DOMAIN) -> list[str]:
    """Imports in the domain package of anything in DOMAIN_FORBIDDEN or outside DOMAIN_ALLOWED."""
    modules = project_modules(root)
    problems = []
    for file in python_files(root, domain):
        for imp in imports_of(root, file, modules):
            forbidden = next((f for f in DOMAIN_FORBIDDEN if _matches(imp.target, f)), None)
            if forbidden:
                problems.append(f"{imp.where(root)}: {imp.target} is imported in {domain}/ ({forbidden} is not "
                                f"domain code: inject it through a port)")
            elif imp.target.split(".")[0] not in DOMAIN_ALLOWED:
                problems.append(f"{imp.where(root)}: {imp.target} is imported in {domain}/ (allowed: the standard "
                                f"library, {', '.join(sorted(DOMAIN_ALLOWED - set(sys.stdlib_module_names)))})")
    return problems


def _matches(name: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return name.split(".")[0].startswith(pattern[:-1])
    return name == pattern or name.startswith(pattern + ".")


# --- the tests ---------------------------------------------------------------------------------------

def test_the_domain_imports_no_framework_storage_network_or_upper_layer():
    assert len(python_files(ROOT, DOMAIN)) > 50  # the whole of trading/, not a sample
    problems = domain_violations(ROOT)
    assert not problems, "\n".join(problems)


def test_no_import_runs_up_the_layers():
    problems = layer_violations(ROOT)
    assert not problems, "\n".join(problems)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_reports_an_upward_import_and_not_a_downward_one(tmp_path):
    root = write(tmp_path, {
        "trading/__init__.py": '"""domain"""\n',
        "trading/book.py": "import math\n",
        "trading/bad.py": "def f():\n    from assets import prices\n",
        "assets/__init__.py": "",
        "assets/prices.py": "from trading import book\nfrom . import other\nimport trading.book\n",
        "assets/other.py": "from streaming.app import x\n",
        "streaming/__init__.py": "",
        "streaming/app.py": "import importlib\nimportlib.import_module('orchestration.defs')\n",
        "orchestration/__init__.py": "",
        "orchestration/defs.py": "from assets import prices\n",
        "orchestration/cli.py": "import importlib\nCOMMANDS = {'a': 'orchestration.defs:x', 'b': 'tests.t:y'}\n"
                                "def get(n):\n    return importlib.import_module(COMMANDS[n].split(':')[0])\n",
        "tests/t.py": "import orchestration.defs\nimport trading.bad\n",
        "extra/thing.py": "x = 1\n",
    })
    assert sorted(layer_violations(root)) == sorted([
        "trading/bad.py:2: trading.bad (layer 0, trading) imports assets.prices (layer 2, assets): "
        "imports must not run up the layers",
        "assets/other.py:1: assets.other imports streaming.app: assets must not import streaming",
        "streaming/app.py:2: streaming.app (layer 2, streaming) imports orchestration.defs (layer 3, orchestration): "
        "imports must not run up the layers",
        "orchestration/cli.py:2: orchestration.cli (layer 3, orchestration) imports tests.t (layer 4, tests): "
        "imports must not run up the layers",
        "extra/thing.py:1: extra.thing has no layer: add it to LAYERS",
    ])
    assert domain_violations(root) == [
        "trading/bad.py:2: assets.prices is imported in trading/ (assets is not domain code: inject it through a port)"]


def test_the_domain_check_reports_each_forbidden_import_with_its_line(tmp_path):
    root = write(tmp_path, {
        "trading/__init__.py": "",
        "deploy/settings.py": "def get_settings(): ...\n",
        "trading/ok.py": "import numpy as np\nfrom urllib.parse import quote\nfrom .venue import fetch\n",
        "trading/venue.py": "import dagster_postgres\n\ndef fetch():\n    import urllib.request\n"
                            "    from urllib import request\n    import pandas\n"
                            "    from deploy.settings import get_settings\n",
    })
    assert domain_violations(root) == [
        "trading/venue.py:1: dagster_postgres is imported in trading/ (dagster_* is not domain code: inject it "
        "through a port)",
        "trading/venue.py:4: urllib.request is imported in trading/ (urllib.request is not domain code: inject it "
        "through a port)",
        "trading/venue.py:5: urllib.request is imported in trading/ (urllib.request is not domain code: inject it "
        "through a port)",
        "trading/venue.py:6: pandas is imported in trading/ (allowed: the standard library, cvxpy, numpy, polars, "
        "trading, yaml)",
        "trading/venue.py:7: deploy.settings is imported in trading/ (deploy is not domain code: inject it through "
        "a port)",
    ]
