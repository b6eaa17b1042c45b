"""The report in a real headless browser (Debian's chromium, driven by Playwright): it loads with
no console errors, every plot renders with its marks, and a screenshot is kept.

Where chromium or Playwright is missing the test is skipped, saying why; with
``PERFSDK_REQUIRE_BROWSER=1`` (as ``.ci/run`` sets) a missing browser fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from perfsdk.report import write_report
from test_report import shared_demo_dir

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
REPO = Path(__file__).resolve().parents[1]


def _browser() -> str:
    """The chromium executable, or skip (fail, when a browser is required) saying what is missing."""
    required = os.environ.get("PERFSDK_REQUIRE_BROWSER") == "1"
    executable = next((c for c in CHROMIUM if os.access(c, os.X_OK)), None) or shutil.which("chromium")
    problem = None
    if executable is None:
        problem = "no chromium installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install playwright)"
    if problem:
        if required:
            pytest.fail(f"PERFSDK_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    assert executable is not None
    return executable


def _git_ignored(path: Path) -> bool:
    try:
        return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_the_report_renders_in_a_real_browser(tmp_path_factory, tmp_path):
    executable = _browser()
    from playwright.sync_api import sync_playwright

    page_path = write_report(shared_demo_dir(tmp_path_factory), out=tmp_path / "report.html")
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "assert") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(page_path.as_uri(), wait_until="load")
            plots = page.evaluate("""() => [...document.querySelectorAll('svg.plot')].map(svg => {
                const box = svg.getBoundingClientRect();
                const marks = svg.querySelector('g.marks');
                const drawn = [...marks.querySelectorAll('path, circle, polygon')]
                    .map(el => el.getBBox()).filter(b => b.width > 0 || b.height > 0).length;
                return {title: svg.getAttribute('aria-label'), width: box.width, height: box.height, drawn,
                        network: performance.getEntriesByType('resource').length};
            })""")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert len(plots) >= 20  # two runs: latency per route, bands, cache, pool, timeline
    for plot in plots:
        assert plot["width"] > 100 and plot["height"] > 40, plot
        assert plot["drawn"] > 0, f"nothing drawn in {plot['title']!r}"
        assert plot["network"] == 0  # self-contained: the page fetched nothing
    assert shot.stat().st_size > 10_000
    artifacts = REPO / ".artifacts"
    if _git_ignored(artifacts / "report.png"):
        artifacts.mkdir(exist_ok=True)
        shutil.copyfile(shot, artifacts / "report.png")
