"""The browser fixture's decisions when Chromium is missing: skip with the reason, and fail under CI."""

from __future__ import annotations

import pytest

from tests import browser


@pytest.fixture
def no_chromium(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)  # not root: nothing may be installed
    monkeypatch.delenv("CI", raising=False)


def test_missing_chromium_without_root_skips_saying_how_to_install(no_chromium):
    # as root on Debian it would be installed; elsewhere the reason says what to install
    with pytest.raises(pytest.skip.Exception,
                       match=r"install it as root: apt-get install -y chromium|install the `chromium` package"):
        browser.ensure_chromium()


def test_missing_chromium_fails_under_ci(no_chromium, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="^browser check cannot run under CI: no Chromium at "):
        browser.ensure_chromium()


def test_present_chromium_is_used_as_is(tmp_path, monkeypatch):
    (tmp_path / "chromium").touch()
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "chromium"))
    assert browser.ensure_chromium() == str(tmp_path / "chromium")
