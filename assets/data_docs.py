"""Great Expectations validation with a file-backed context, and Data Docs that render offline.

Data Docs pages load Bootstrap, jQuery and Font Awesome from CDNs; the machines this runs on are often
offline, so after each build the pages are rewritten to use copies shipped by the XStatic wheels
(installed with the project), and tags for assets nobody ships offline (Vega charts, bootstrap-table
extras, remote logos) are dropped. The tables and results stay fully readable.
"""

from __future__ import annotations

import fcntl
import re
import shutil
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
             batch_label: str) -> ValidationSummary:
    """Validate a pandas DataFrame against `expectations`, store the result, rebuild the Data Docs."""
    import great_expectations as gx

    with _locked(project_dir):
        context = gx.get_context(mode="file", project_root_dir=str(project_dir))
        _point_site_at(context, site_dir)
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
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=suite_name, validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["local_site"])],
            result_format={"result_format": "SUMMARY"},
        ))
        run = checkpoint.run(batch_parameters={"dataframe": frame},
                             run_id=gx.RunIdentifier(run_name=batch_label))
        result = next(iter(run.run_results.values()))
        make_offline(site_dir)
        return ValidationSummary(
            suite=suite_name,
            success=bool(result.success),
            evaluated=result.statistics["evaluated_expectations"],
            failed=result.statistics["unsuccessful_expectations"],
            results=[_summarise(r) for r in result.results],
            docs_path=_result_page(site_dir, suite_name, batch_label),
        )


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


def make_offline(site_dir: Path) -> int:
    """Rewrite every page so nothing loads from the network. Returns the number of pages changed."""
    _copy_vendor(site_dir)
    changed = 0
    for page in site_dir.rglob("*.html"):
        if VENDOR_DIR in str(page.relative_to(site_dir)):
            continue
        html = page.read_text(encoding="utf-8")
        root = "../" * (len(page.relative_to(site_dir).parts) - 1)
        new = _LINK.sub(lambda m: _replace(m.group(0), "href", root), html)
        new = _SCRIPT.sub(lambda m: _replace(m.group(0), "src", root), new)
        new = _IMG.sub("", new)
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
