"""Data Docs readable offline: the home page lists every validation result, as links, with no script and
nothing from the network. Built by the real Great Expectations (assets.data_docs.validate), served by the
stack's own `docs` server, read by a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from assets.data_docs import build_site, make_offline, validate
from tests.browser import artefacts_dir, browser  # noqa: F401  (fixtures)

# (suite, batch label as the assets use it: the partition key) -> the validation passes
RUNS = {("ohlcv_raw", "2026-11-01|BTC-USDT"): True, ("ohlcv_raw", "2026-11-02|BTC-USDT"): False,
        ("ohlcv_clean", "2026-11-01|ETH-USDT"): True}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    from deploy.settings import Settings
    from deploy.stack.process import free_port

    return Settings(_env_file=None, home=tmp_path_factory.mktemp("home"), database_url=None, kafka_bootstrap=None,
                    docs_port=free_port())


@pytest.fixture(scope="module")
def site(settings) -> dict[tuple[str, str], Path]:
    """A Data Docs site (where the assets put it) with RUNS validated; -> each run's result page."""
    import great_expectations.expectations as gxe

    pages = {}
    for (suite, label), passes in RUNS.items():
        frame = pd.DataFrame({"volume": [1.0, 2.0, 3.0] if passes else [1.0, -2.0, 3.0]})
        summary = validate(frame, suite, [gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0)],
                           project_dir=settings.home / "gx", site_dir=settings.site_dir / "data_docs",
                           batch_label=label)
        assert summary.success is passes and summary.docs_path.exists()
        pages[(suite, label)] = summary.docs_path
    return pages


@pytest.fixture(scope="module")
def docs_url(settings, site) -> str:
    """The `docs` service exactly as `tradeloop up` starts it, serving the site."""
    from deploy.stack import services
    from deploy.stack.process import stop

    record = services.start_docs(settings)
    try:
        yield f"{record.url}/data_docs"
    finally:
        stop(record, settings.run_dir)


def index_links(html: str) -> set[str]:
    return {unquote(h) for h in re.findall(r'<a href="([^"]+)" class="ge-index-page-row-link"', html)}


def test_home_page_links_every_result_without_a_script(settings, site):
    root = settings.site_dir / "data_docs"
    html = (root / "index.html").read_text()
    on_disk = {p.relative_to(root).as_posix() for p in (root / "validations").rglob("*.html")}
    assert len(on_disk) == len(RUNS)
    assert {p.relative_to(root).as_posix() for p in site.values()} == on_disk
    assert {link for link in index_links(html) if link.startswith("validations/")} == on_disk
    assert {link for link in index_links(html) if link.startswith("expectations/")} == {
        "expectations/ohlcv_raw.html", "expectations/ohlcv_clean.html"}
    assert "bootstrapTable" not in html and 'data-toggle="table"' not in html
    assert not re.findall(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', html)
    # newest first, as GE's table sorts it
    runs = re.findall(r'class="ge-index-page-row-link">(2026-11-0\d\|\w+-USDT)</a>', html)
    assert runs == [label for _, label in reversed(RUNS)]
    assert make_offline(root) == 0  # already offline: a rebuild of other pages leaves it alone


def test_unreadable_table_data_is_one_clear_error():
    from assets.data_docs import _static_tables

    page = ('<table id="t-body-table" class="x" data-toggle="table"></table><script>'
            "$('#t-body-table').bootstrapTable(Object.assign({columns: [{'field': 'a'}], data: [f(1)], "
            "toolbar: '#t-body-table-toolbar'}, {}));</script>")
    with pytest.raises(ValueError, match="^Data Docs table t-body-table: cannot read the table data"):
        _static_tables(page)
    ok = page.replace("[f(1)]", "[{'a': 'x', '_table_row_link_path': 'p.html'}]")
    assert _static_tables(ok) == ('<table id="t-body-table" class="table table-hover x"><thead><tr><th>a</th></tr>'
                                  '</thead><tbody><tr><td><a href="p.html" class="ge-index-page-row-link">x</a></td>'
                                  '</tr></tbody></table>')


def test_a_browser_finds_and_opens_every_result_offline(browser, docs_url, settings, site, artefacts_dir):  # noqa: F811
    root = settings.site_dir / "data_docs"
    expected = {f"/data_docs/{p.relative_to(root).as_posix()}": key for key, p in site.items()}
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{docs_url}/index.html", wait_until="load")
    results = page.locator("#Validation-Results a.ge-index-page-row-link")
    hrefs = {unquote(urlparse(h).path) for h in results.evaluate_all("links => links.map(a => a.href)")}
    assert hrefs == set(expected)
    for (suite, label), passes in RUNS.items():  # each row shows its run and its status
        row = page.locator("#Validation-Results tr", has_text=label)
        assert row.count() == 1 and row.is_visible(), label
        assert row.locator(".ge-success-icon" if passes else ".ge-failed-icon").count() == 1, label
    page.screenshot(path=str(artefacts_dir / "data_docs_index.png"), full_page=True)

    for path, (suite, label) in sorted(expected.items()):
        page.goto(f"{docs_url}/index.html", wait_until="load")
        page.locator("#Validation-Results tr", has_text=label).get_by_role("link", name=label).click()
        page.wait_for_load_state("load")
        assert unquote(urlparse(page.url).path) == path
        body = page.locator("body").inner_text()
        assert "Expectation Validation Result" in body and suite in body and label in body
    page.screenshot(path=str(artefacts_dir / "data_docs_result.png"), full_page=True)

    assert errors == []
    origin = urlparse(docs_url).netloc
    assert [u for u in requested if urlparse(u).netloc != origin] == []  # nothing from a CDN

    # and without JavaScript at all the list is the same
    plain = browser.new_context(java_script_enabled=False).new_page()
    plain.goto(f"{docs_url}/index.html", wait_until="load")
    links = plain.locator("#Validation-Results a.ge-index-page-row-link")
    assert {unquote(urlparse(h).path) for h in links.evaluate_all("links => links.map(a => a.href)")} == set(expected)
    plain.context.close()
    page.close()


def test_one_stored_suite_checks_each_partition_against_its_own_freshness_bound(tmp_path):
    """The OHLCV suite is stored once per process and reused; the freshness bound of each partition is a
    suite parameter, so a later validation is never judged against an earlier partition's bound."""
    from datetime import datetime, timezone

    from assets.ohlcv_expectations import ohlcv_suite, suite_parameters, to_pandas
    from assets.resources import MarketDataSource

    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    ns = int(start.timestamp()) * 1_000_000_000
    bars, _ = MarketDataSource(kind="sim", seed=7).fetch_bars("BTC/USDT", "1m", ns, ns + 86_400 * 1_000_000_000)
    frame = to_pandas(bars.head(1430))  # the day's last ten bars are missing: complete (99%) but not fresh
    dirs = {"project_dir": tmp_path / "gx", "site_dir": tmp_path / "site"}

    def check(through: datetime, label: str, **kw):
        return validate(frame, "ohlcv_raw", ohlcv_suite(1440), expectation_parameters=suite_parameters(through),
                        batch_label=label, **dirs, **kw)

    stale = check(datetime(2026, 11, 1, 23, 59, tzinfo=timezone.utc), "end_of_day")
    assert not stale.success and [f["expectation"] for f in stale.failures()] == ["expect_column_max_to_be_between"]
    fresh = check(datetime(2026, 11, 1, 23, 49, tzinfo=timezone.utc), "through_23_49")
    assert fresh.success and fresh.evaluated == stale.evaluated
    assert stale.docs_path.exists() and fresh.docs_path.exists()

    # update_docs off: the result is stored, the site untouched until build_site renders what is missing
    pages = set((tmp_path / "site").rglob("*.html"))
    later = check(datetime(2026, 11, 1, 23, 59, tzinfo=timezone.utc), "docs_later", update_docs=False)
    assert not later.success and later.docs_path is None
    assert set((tmp_path / "site").rglob("*.html")) == pages
    index = build_site(**dirs)
    (page,) = (tmp_path / "site" / "validations" / "ohlcv_raw" / "docs_later").rglob("*.html")
    links = index_links(index.read_text())
    assert page.relative_to(tmp_path / "site").as_posix() in links
    assert {f"validations/ohlcv_raw/{label}" for label in ("end_of_day", "through_23_49", "docs_later")} == {
        link.rsplit("/", 2)[0] for link in links if link.startswith("validations/")}
    assert "expectations/ohlcv_raw.html" in links
    assert not re.findall(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', page.read_text())
