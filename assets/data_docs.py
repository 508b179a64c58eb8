"""Great Expectations validation with a file-backed context, and Data Docs that render offline.

Data Docs pages load Bootstrap, jQuery and Font Awesome from CDNs; the machines this runs on are often
offline, so after each build the pages are rewritten to use copies shipped by the XStatic wheels
(installed with the project), and tags for assets nobody ships offline (Vega charts, bootstrap-table,
remote logos) are dropped. The home page's tables (validation results, expectation suites) are drawn
in the browser by bootstrap-table from data embedded in a script; without that library they would
be empty, so they are rendered into plain HTML tables with a link to every page instead.
"""

from __future__ import annotations

import ast
import fcntl
import html as html_lib
import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

VENDOR_DIR = "static/vendor"


@dataclass
class ValidationSummary:
    suite: str
    success: bool
    evaluated: int
    failed: int
    results: list[dict] = field(default_factory=list)  # one per expectation: type, column(s), success, counts
    docs_path: Path | None = None  # the validation result page on disk

    def failures(self) -> list[dict]:
        return [r for r in self.results if not r["success"]]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    # several Dagster runs (partitions of a backfill) share one GE project directory
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def validate(frame, suite_name: str, expectations: list, *, project_dir: Path, site_dir: Path,
             batch_label: str, expectation_parameters: dict | None = None,
             update_docs: bool = True) -> ValidationSummary:
    """Validate a pandas DataFrame against `expectations` and store the result; with `update_docs` also
    render its page and the site's index (else `build_site` renders it later). `expectation_parameters`
    gives the values of the suite's ``{"$PARAMETER": name}`` arguments for this batch."""
    import great_expectations as gx
    from great_expectations.exceptions import ResourceFreshnessAggregateError

    with _locked(project_dir):
        began = time.time()
        key = (str(project_dir), str(site_dir), suite_name, _fingerprint(expectations), update_docs)
        run_args = {"batch_parameters": {"dataframe": frame}, "expectation_parameters": expectation_parameters or {},
                    "run_id": gx.RunIdentifier(run_name=batch_label)}
        try:
            run = _checkpoint(key, project_dir, site_dir, suite_name, expectations, update_docs).run(**run_args)
        except ResourceFreshnessAggregateError:
            # another process stored the suite (or checkpoint) again since this one cached it
            _CHECKPOINTS.pop(key, None)
            run = _checkpoint(key, project_dir, site_dir, suite_name, expectations, update_docs).run(**run_args)
        result = next(iter(run.run_results.values()))
        if update_docs:
            make_offline(site_dir, changed_since=began)
        return ValidationSummary(
            suite=suite_name,
            success=bool(result.success),
            evaluated=result.statistics["evaluated_expectations"],
            failed=result.statistics["unsuccessful_expectations"],
            results=[_summarise(r) for r in result.results],
            docs_path=_result_page(site_dir, suite_name, batch_label) if update_docs else None,
        )


def build_site(project_dir: Path, site_dir: Path) -> Path:
    """Render the pages of the stored validation results that have none yet (runs with ``update_docs``
    off), the suites' pages and the index, offline; returns the index page."""
    with _locked(project_dir):
        context = _context(project_dir, site_dir)
        results = context.validation_results_store.list_keys()
        missing = [k for k in results if not (site_dir / "validations" / _page(k)).exists()]
        # as a validation's UpdateDataDocsAction does: its result's page, the suites' pages, the index
        context.build_data_docs(site_names=["local_site"],
                                resource_identifiers=[*missing, *context.expectations_store.list_keys()])
        make_offline(site_dir)
    return site_dir / "index.html"


def _page(key) -> str:
    # where GE's site builder writes a validation result's page (TupleFilesystemStoreBackend, ".html")
    return "/".join(key.to_tuple()) + ".html"


# One file-backed context per project and one checkpoint per suite definition, per process: creating the
# context and storing suite, validation definition and checkpoint again cost more than the validation
# itself (market data validates two suites a partition, every partition of a backfill or simulation).
_CONTEXTS: dict[tuple[str, str], object] = {}
_CHECKPOINTS: dict[tuple, object] = {}


def _context(project_dir: Path, site_dir: Path):
    import great_expectations as gx

    key = (str(project_dir), str(site_dir))
    if key not in _CONTEXTS:
        context = gx.get_context(mode="file", project_root_dir=str(project_dir))
        _point_site_at(context, site_dir)
        _CONTEXTS[key] = context
    return _CONTEXTS[key]


def _fingerprint(expectations: list) -> str:
    return json.dumps([e.configuration.to_json_dict() for e in expectations], sort_keys=True, default=str)


def _checkpoint(key: tuple, project_dir: Path, site_dir: Path, suite_name: str, expectations: list,
                update_docs: bool):
    if key in _CHECKPOINTS:
        return _CHECKPOINTS[key]
    import great_expectations as gx

    context = _context(project_dir, site_dir)
    source = _get_or_add(lambda: context.data_sources.get("tradeloop"),
                         lambda: context.data_sources.add_pandas("tradeloop"))
    asset = _get_or_add(lambda: source.get_asset(suite_name),
                        lambda: source.add_dataframe_asset(suite_name))
    batch = _get_or_add(lambda: asset.get_batch_definition("whole"),
                        lambda: asset.add_batch_definition_whole_dataframe("whole"))
    fresh = [_detached(e) for e in expectations]  # an expectation object belongs to one suite only
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=fresh))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["local_site"])] if update_docs else []
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=suite_name if update_docs else f"{suite_name}_without_docs", validation_definitions=[definition],
        actions=actions, result_format={"result_format": "SUMMARY"},
    ))
    _CHECKPOINTS[key] = checkpoint
    return checkpoint


def _detached(expectation):
    copied = expectation.copy()
    copied.id = None
    return copied


def _get_or_add(get, add):
    try:
        return get()
    except (KeyError, LookupError, ValueError, Exception):  # GE raises assorted "not found" errors
        return add()


def _point_site_at(context, site_dir: Path) -> None:
    config = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    sites = context.list_data_docs_sites()
    current = sites.get("local_site", {}).get("store_backend", {}).get("base_directory")
    if current != str(site_dir):
        if "local_site" in sites:
            context.update_data_docs_site("local_site", config)
        else:
            context.add_data_docs_site("local_site", config)


def _summarise(result) -> dict:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k in ("column", "column_A", "column_B", "column_list",
                                                              "min_value", "max_value")}
    stats = result.result or {}
    return {
        "expectation": config.type,
        **{k: (str(v) if not isinstance(v, (int, float, str, list, type(None))) else v) for k, v in kwargs.items()},
        "success": bool(result.success),
        "unexpected_count": stats.get("unexpected_count"),
        "observed_value": _plain(stats.get("observed_value")),
    }


def _plain(value):
    return value if isinstance(value, (int, float, str, type(None))) else str(value)


def _result_page(site_dir: Path, suite_name: str, batch_label: str) -> Path | None:
    pages = sorted((site_dir / "validations" / suite_name).glob(f"{batch_label}/**/*.html"))
    return pages[-1] if pages else None


# --- offline Data Docs -------------------------------------------------------------------------------

_LINK = re.compile(r"<link\b[^>]*href=\"(https?:)?//[^\"]*\"[^>]*>", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*src=\"(https?:)?//[^\"]*\"[^>]*>\s*</script>", re.I)
_IMG = re.compile(r"<img\b[^>]*src=\"(https?:)?//[^\"]*\"[^>]*>", re.I)

# CDN file name -> our local copy (relative to the site root)
_LOCAL = {
    "bootstrap.min.css": f"{VENDOR_DIR}/bootstrap/css/bootstrap.min.css",
    "bootstrap.min.js": f"{VENDOR_DIR}/bootstrap/js/bootstrap.bundle.min.js",  # bundle carries Popper
    "jquery-3.7.1.min.js": f"{VENDOR_DIR}/jquery/jquery.min.js",
    "all.min.css": f"{VENDOR_DIR}/font_awesome/css/all.min.css",
}


def _copy_vendor(site_dir: Path) -> None:
    import xstatic.pkg.bootstrap
    import xstatic.pkg.font_awesome
    import xstatic.pkg.jquery

    for name, pkg in (("bootstrap", xstatic.pkg.bootstrap), ("jquery", xstatic.pkg.jquery),
                      ("font_awesome", xstatic.pkg.font_awesome)):
        target = site_dir / VENDOR_DIR / name
        if not target.exists():
            # only what the pages use (Font Awesome also ships thousands of SVGs)
            shutil.copytree(pkg.BASE_DIR, target,
                            ignore=shutil.ignore_patterns("svgs", "sprites", "less", "scss", "metadata", "*.map"))


def make_offline(site_dir: Path, changed_since: float | None = None) -> int:
    """Rewrite every page (or those written at or after `changed_since`, a time.time(): the ones a build
    just wrote) so nothing loads from the network. Returns the number of pages changed."""
    _copy_vendor(site_dir)
    changed = 0
    for page in site_dir.rglob("*.html"):
        if VENDOR_DIR in str(page.relative_to(site_dir)):
            continue
        # a second of slack for file systems with coarse timestamps; rewriting an offline page changes nothing
        if changed_since is not None and page.stat().st_mtime < changed_since - 1:
            continue
        html = page.read_text(encoding="utf-8")
        root = "../" * (len(page.relative_to(site_dir).parts) - 1)
        new = _LINK.sub(lambda m: _replace(m.group(0), "href", root), html)
        new = _SCRIPT.sub(lambda m: _replace(m.group(0), "src", root), new)
        new = _IMG.sub("", new)
        new = _static_tables(new)
        if new != html:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def _replace(tag: str, attr: str, root: str) -> str:
    url = re.search(rf'{attr}="([^"]*)"', tag).group(1)
    local = _LOCAL.get(url.rsplit("/", 1)[-1].split("?")[0])
    if local is None:
        return ""  # nothing offline provides it (charts, table extras): drop rather than hang on a CDN
    return re.sub(rf'{attr}="[^"]*"', f'{attr}="{root}{local}"', tag).replace(' integrity="', ' data-integrity="')


# --- the home page's tables, rendered without bootstrap-table --------------------------------------

# GE 1.x writes each index table as an empty <table data-toggle="table"> plus a script that fills it:
#   $('#<id>').bootstrapTable(Object.assign({columns: [...], data: [...], toolbar: '...'}, {...options}))
# columns, data and options are Python reprs of lists/dicts of strings and numbers (GE renders them with
# str()), so ast.literal_eval reads them back exactly.
_TABLE_SCRIPT = re.compile(
    r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*"
    r"columns:\s*(?P<columns>\[.*?\]),\s*data:\s*(?P<data>\[.*?\]),\s*toolbar:\s*'[^']*'\s*\},\s*"
    r"(?P<options>\{.*?\})\s*\)\s*\);", re.S)
_SCRIPT_BLOCK = re.compile(r"<script>(?:(?!</script>).)*?</script>", re.S)


def _static_tables(page: str) -> str:
    """Replace every bootstrap-table of a page by the same table in plain HTML (no script needed)."""
    for match in list(_TABLE_SCRIPT.finditer(page)):
        table_id = match["id"]
        try:
            columns, rows, options = (ast.literal_eval(match[k]) for k in ("columns", "data", "options"))
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"Data Docs table {table_id}: cannot read the table data GE embedded ({exc})") from exc
        empty = re.compile(rf'<table\s+id="{table_id}"(?P<attrs>[^>]*?)\s*data-toggle="table"\s*>\s*</table>')
        if not empty.search(page):
            raise ValueError(f"Data Docs table {table_id}: its <table data-toggle=\"table\"> element is missing")
        page = empty.sub(lambda m: _html_table(table_id, m["attrs"], columns, rows, options), page, count=1)
        # the toolbar only holds a "Clear Filters" button that drives bootstrap-table
        page = re.sub(rf'<div id="{table_id}-toolbar"[^>]*>.*?</div>', "", page, count=1, flags=re.S)
    # the scripts that called bootstrap-table (fill, filter, row clicks) have nothing left to drive
    return _SCRIPT_BLOCK.sub(lambda m: "" if "bootstrapTable" in m.group(0) else m.group(0), page)


def _html_table(table_id: str, attrs: str, columns: list[dict], rows: list[dict], options: dict) -> str:
    by_field = {c["field"]: c for c in columns}
    sort_by = options.get("sortName")
    if sort_by:
        key = by_field.get(sort_by, {}).get("sortName", sort_by)
        rows = sorted(rows, key=lambda r: r.get(key, ""), reverse=options.get("sortOrder") == "desc")
    head = "".join(f"<th>{html_lib.escape(str(c.get('title', c['field'])))}</th>" for c in columns)
    body = "".join(_html_row(row, columns) for row in rows) or (
        f'<tr><td colspan="{len(columns)}" class="text-muted">Nothing yet.</td></tr>')
    attrs = re.sub(r'class="([^"]*)"', r'class="table table-hover \1"', attrs) if "class=" in attrs else (
        attrs + ' class="table table-hover table-sm"')
    return f'<table id="{table_id}"{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_row(row: dict, columns: list[dict]) -> str:
    # GE's cell values are HTML it rendered itself (icons, tooltips, links), shown as-is as bootstrap-table
    # would. GE made the whole row a script-driven link to the row's page; here the plain-text cells (run
    # time, run name, asset, suite name) become ordinary links to it.
    link = row.get("_table_row_link_path")
    cells = []
    for column in columns:
        value = str(row.get(column["field"], ""))
        if link and "<" not in value:
            value = f'<a href="{html_lib.escape(link, quote=True)}" class="ge-index-page-row-link">{value}</a>'
        cells.append(f"<td>{value}</td>")
    return f"<tr>{''.join(cells)}</tr>"
