"""How the browser tests find their Chromium, and what they do without one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support import browser
from tests.support.browser import Chromium, find_chromium, in_ci


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_chromium_variable_comes_first(tmp_path: Path) -> None:
    chosen = _executable(tmp_path / "my-chromium")

    assert find_chromium({"CHROMIUM": str(chosen)}) == Chromium(chosen, "$CHROMIUM")


def test_a_chromium_variable_naming_no_executable_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not an executable file"):
        find_chromium({"CHROMIUM": str(tmp_path / "missing")})


def test_debians_chromium_on_path_comes_before_playwrights_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    debian = _executable(tmp_path / "chromium")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(browser, "_playwright_chromium", lambda: pytest.fail("looked further than PATH"))

    assert find_chromium({}) == Chromium(debian, "Debian's chromium")


def test_without_chromium_on_path_playwrights_download_is_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    downloaded = _executable(tmp_path / "chrome")
    monkeypatch.setattr(browser, "_playwright_chromium", lambda: downloaded)

    assert find_chromium({}) == Chromium(downloaded, "Playwright's download")
    monkeypatch.setattr(browser, "_playwright_chromium", lambda: None)
    assert find_chromium({}) is None


def test_playwrights_own_location_is_asked_of_playwright() -> None:
    found = browser._playwright_chromium()

    assert found is None or os.access(found, os.X_OK)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("", False), ("false", False)])
def test_ci_is_recognised_from_the_ci_variable(value: str, expected: bool) -> None:
    assert in_ci({"CI": value}) is expected


def test_the_report_says_how_to_get_the_browser_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(browser, "_playwright_chromium", lambda: None)

    assert browser.main([]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("browser tests will be SKIPPED: ")
    assert "apt-get install chromium" in line
    assert "playwright install chromium" in line


def test_the_report_names_the_browser_it_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    debian = _executable(tmp_path / "chromium")

    assert browser.main([]) == 0
    assert capsys.readouterr().out.strip() == f"browser tests: Debian's chromium at {debian}"
