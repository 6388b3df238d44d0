"""`gapbench report`: one self-contained HTML page, drawn offline in a real browser, with every
string from a set escaped and bad input refused in one line."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import FIRST_V8_SET, ORT_SET, RAG_SET

import harness.cli as cli
from harness.archive.names import load
from harness.archive.store import Archive
from harness.report import html
from harness.report.charts import charts
from harness.report.page import Page, build

# In the set's manifest and in a projection kept beside the base: both are shared files.
HOSTILE_CPU = '<img src="x" onerror="window.hostile=1">CPU</td><script>window.hostile=2</script>'
HOSTILE_CLAIM = '<a href="https://example.invalid/">claim</a><script>window.hostile=3</script>'
# [1] and [2] were given the same work (the base and the onnxruntime run of the same command);
# [3] other work, under a load: every section of the page has something to show.
SETS = (RAG_SET, ORT_SET, FIRST_V8_SET)
CHARTS = ("breakdown", "latency", "throughput", "load", "projected")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """The three sets in an archive of their own, with hostile strings planted in copies."""
    folder = tmp_path / "results"
    for source in SETS:
        shutil.copytree(source, folder / source.name)
    manifest = folder / ORT_SET.name / "manifest.json"
    body = json.loads(manifest.read_text())
    body["fingerprint"]["host"]["host_processor_model_name"] = HOSTILE_CPU
    manifest.write_text(json.dumps(body))
    kept = folder / RAG_SET.name / "projections"
    first = sorted(kept.glob("*.json"))[0]
    body = json.loads(first.read_text())
    body["claim"]["name"] = HOSTILE_CLAIM
    (kept / "29991231T000000000000Z-00000000.json").write_text(json.dumps(body))
    return folder


def page_of(archive: Path) -> Page:
    results = [load(str(archive / s.name)) for s in SETS]
    return build(results, kept=Archive(archive).projections(RAG_SET.name))


@pytest.fixture
def gapbench():
    """``gapbench`` as the command line runs it."""
    return cli.main


def test_page_draws_each_section_and_compares_only_the_same_work(archive: Path) -> None:
    page = page_of(archive)
    assert [c.key for c in charts(page)] == list(CHARTS)
    assert [v.work for v in page.sets] == [1, 1, 2]
    compared, other = page.pairings
    assert compared.comparison is not None and compared.index == 2
    assert (
        other.comparison is None and "different work (code_hash: another version" in other.why_not
    )
    # Two kept projections (the fixture's and the planted one), each against [2].
    assert [r.against for r in page.projected] == [2, 2]
    delivered = compared.comparison.end_to_end.ratio
    assert all(r.delivered is not None and r.delivered.ratio == delivered for r in page.projected)
    assert [p.index for p in page.load] == [3]
    base = page.sets[0]
    assert base.ecdf_share[-1] == 1.0 and len(base.ecdf_ms) == base.summary.end_to_end.n
    assert base.machine.accelerators == "none" and base.requests_per_s > 0


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_page_is_self_contained_and_escapes_what_sets_say(archive: Path) -> None:
    from plotly.offline import get_plotlyjs

    text = html.render(page_of(archive))
    parsed = _Tags()
    parsed.feed(text)
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts and not any("src" in attrs for attrs in scripts)
    assert not [
        a
        for tag, a in parsed.tags
        if tag in ("link", "img", "iframe", "a")
        and (("href" in a and not str(a["href"]).startswith("#")) or "src" in a)
    ]
    assert text.count(get_plotlyjs()[:200]) == 1  # plotly.js inline, once
    ours = text.replace(get_plotlyjs(), "")  # what the page says, beside plotly's own code
    assert "cdn.plot.ly" not in ours and "http://" not in ours
    for hostile in (HOSTILE_CPU, HOSTILE_CLAIM):
        assert hostile not in text
    assert "<script>window.hostile" not in ours and '<a href="https:' not in ours
    assert "&lt;img src=&quot;x&quot; onerror=" in text  # in the machines table, as text
    assert "&lt;a href=&quot;https://example.invalid/&quot;&gt;claim" in text  # and its table


# CI installs the browser (.ci/run) and sets this: there, a missing browser fails the test.
REQUIRED = os.environ.get("GAPBENCH_BROWSER_TEST") == "required"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if REQUIRED:
            pytest.fail("no chromium on PATH, and the browser test is required here")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return found


class Offline:
    """What a page loaded from a file tried beyond it, and what went wrong as it ran."""

    def __init__(self) -> None:
        self.attempted: list[str] = []  # every request not for a local file
        self.errors: list[str] = []  # console errors (a blocked load among them) and exceptions
        self.dialogs: list[str] = []

    def route(self, route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.attempted.append(route.request.url)
            route.abort()

    def request(self, request) -> None:
        if not request.url.startswith(("file:", "data:", "blob:")):
            self.attempted.append(request.url)

    def console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


# Every chart div plotly made, each with the SVG it draws into.
ALL_DRAWN = """n => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.length === n && plots.every(d => d.querySelector('svg.main-svg'));
}"""


def test_report_renders_offline_in_a_browser_with_every_chart(
    archive: Path, tmp_path: Path, gapbench
) -> None:
    if REQUIRED:
        import playwright.sync_api as sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    browser_path = _chromium()
    out, shot = tmp_path / "report.html", tmp_path / "report.png"
    refs = [s.name for s in SETS]
    assert gapbench(["report", *refs, "--results", str(archive), "-o", str(out)]) == 0
    seen = Offline()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", seen.route)
            page = context.new_page()
            page.on("request", seen.request)
            page.on("console", seen.console)
            page.on("pageerror", lambda e: seen.errors.append(str(e)))
            page.on("dialog", seen.dialog)
            page.goto(out.as_uri(), wait_until="load")
            page.wait_for_function(ALL_DRAWN, arg=len(CHARTS), timeout=30_000)
            plots = page.locator(".js-plotly-plot")
            ids = [plots.nth(i).get_attribute("id") for i in range(plots.count())]
            assert ids == [f"chart-{key}" for key in CHARTS]
            assert page.locator(".js-plotly-plot svg.main-svg").count() >= len(CHARTS)
            # Bars in the breakdown (a stack per stage and set), a line per set's latencies.
            assert page.locator("#chart-breakdown g.point").count() > 0
            assert page.locator("#chart-latency g.trace.scatter").count() == len(SETS)
            assert page.locator("#sets span.valid").count() == len(SETS)
            # The planted strings are shown as text and nothing of theirs ran.
            assert page.evaluate("window.hostile === undefined")
            assert page.locator("img").count() == 0
            assert page.get_by_text("CPU</td><script>", exact=False).count() == 1
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert seen.attempted == []
    assert seen.errors == []
    assert seen.dialogs == []
    assert shot.stat().st_size > 10_000


def test_bad_input_is_one_line_and_exit_2(
    archive: Path, tmp_path: Path, gapbench, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--results", str(archive)]

    def refused(*argv: str) -> str:
        assert gapbench(["report", *argv, *base]) == 2
        said = capsys.readouterr()
        assert said.out == "" and len(said.err.strip().splitlines()) == 1
        return said.err

    out = tmp_path / "report.html"
    assert "no result set 'nosuchset'" in refused("nosuchset", "-o", str(out))
    assert "no folder" in refused(RAG_SET.name, "-o", str(tmp_path / "none" / "r.html"))
    assert not out.exists()
    assert "inside the archive" in refused(RAG_SET.name, "-o", str(archive / "r.html"))
    set_folder = archive / RAG_SET.name
    said = refused(str(set_folder), "-o", str(set_folder / "r.html"), "--force")
    assert "inside" in said
    assert not (archive / "r.html").exists() and not (set_folder / "r.html").exists()
    out.write_text("mine")
    assert "exists" in refused(RAG_SET.name, "-o", str(out))
    assert out.read_text() == "mine"
    assert "required" in refused(RAG_SET.name)  # no -o
    assert "twice" in refused(RAG_SET.name, RAG_SET.name, "-o", str(tmp_path / "twice.html"))


def test_json_says_where_and_what_and_force_replaces(
    archive: Path, tmp_path: Path, gapbench, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "one.html"
    out.write_text("old")
    argv = ["report", RAG_SET.name, "-o", str(out), "--force", "--json"]
    argv += ["--speedup", "host-cpu.compute=2", "--results", str(archive)]
    assert gapbench(argv) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["written_to"] == str(out) and said["bytes"] == out.stat().st_size
    assert [s["id"] for s in said["sets"]] == [RAG_SET.name]
    # One set: nothing to deliver, so the claim and both kept projections are projected alone.
    assert said["compared"] == [] and said["projections"] == 3
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="chart-projected"' in text
    assert not list(tmp_path.glob(".one.html.*"))  # no temporary file left behind
