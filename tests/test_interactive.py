"""The interactive leaderboard pages, in a real browser (Playwright driving Chromium).

The pages are built from a small synthetic results frame and served over http from a local
server (ES modules do not load from file://); nothing is fetched from the network. Without a
browser the tests skip, saying why; in CI (``CI`` set, as ``.ci/run`` does) a missing browser
fails them instead, so the check is never skipped silently.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading

import pytest

from ebmbench.leaderboard import aggregate, summarize
from ebmbench.leaderboard.interactive import ASSETS, write_interactive
from tests.leaderboard_rows import frame, row, toy_rows
from tests.test_leaderboard import sampler_rows

CHROMIUM = os.environ.get("EBMBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = bool(os.environ.get("CI"))


def _need_browser():
    why = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "playwright is not installed (pip install '.[test]')"
    if why is None and not CHROMIUM:
        why = "no Chromium found (apt-get install chromium, or set EBMBENCH_CHROMIUM)"
    if why:
        if IN_CI:
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(why)


def _rows():
    curve = [{"step": i, "flops": 1e7 * 2**i, "fisher_divergence": 8.0 / (i + 1)} for i in range(6)]
    rows = toy_rows()
    for r in rows:
        r["curve"] = [
            dict(p, fisher_divergence=p["fisher_divergence"] * (1 + 0.1 * ord(r["method"][0]) % 3))
            for p in curve
        ]
    rows += [
        row(
            "spike",
            "ula",
            seed=s,
            status="degenerate",
            fisher_divergence=1e-9,
            test_nll=2346.0,
            notes={"degenerate:nll": "test NLL 2346 > 3.8"},
        )
        for s in (0, 1, 2)
    ]
    rows += [
        row("nce", "ula", seed=s, fisher_divergence=1.5, test_nll=None, log_z_abs_error=0.1, curve=curve)
        for s in (0, 1, 2)
    ]
    return rows + sampler_rows()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    data = frame(_rows())
    boards = aggregate(data)
    summaries = {"models": summarize(boards, "models"), "samplers": summarize(boards, "samplers")}
    write_interactive(boards, summaries, data, out)
    handler = functools.partial(_Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, site):
    _, url = site
    page = browser.new_page(viewport={"width": 1366, "height": 768})  # a laptop screen
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url}"))
    page.goto(f"{url}/toy.html")
    page.wait_for_selector("#toy-models_wrapper", timeout=60_000)
    yield page
    page.close()


def _column(page, table: str, header: str) -> list[str]:
    headers = page.eval_on_selector_all(f"#{table} thead th", "ths => ths.map(t => t.innerText.trim())")
    index = headers.index(header)
    return page.eval_on_selector_all(
        f"#{table} tbody tr", f"trs => trs.map(tr => tr.children[{index}].innerText.trim())"
    )


def test_the_pages_are_written_with_their_assets_and_fetch_nothing_from_the_network(site):
    out, _ = site
    assert sorted(p.name for p in (out / "assets").iterdir()) == sorted(ASSETS)
    for page in out.glob("*.html"):
        text = page.read_text()
        for remote in ('src="http', 'href="http', 'import("http', "from 'http", "cdn", "unpkg"):
            assert remote not in text.replace('href="https://itables.org', ""), (page.name, remote)


def test_the_page_loads_without_console_errors(page):
    page.wait_for_timeout(300)
    assert page.errors == []
    assert page.title().startswith("toy")


def test_method_architecture_and_the_primary_metric_fit_a_laptop_screen(page):
    headers = page.eval_on_selector_all("#toy-models thead th", "ths => ths.map(t => t.innerText.trim())")
    for needed in ("rank", "method", "architecture", "fisher_divergence ↓"):
        assert needed in headers
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = page.locator("#toy-models").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1366


def test_choosing_a_metric_sorts_by_it_and_clicking_its_header_reverses(page):
    ranks = [int(r) for r in _column(page, "toy-models", "rank")]
    assert ranks == sorted(ranks) and ranks[0] == 1  # the page opens in rank order
    assert _column(page, "toy-models", "method")[0] == "a"  # best Fisher divergence and NLL
    page.select_option("#toy-models-metric", "test_nll")
    nll = [float(x) if x != "–" else None for x in _column(page, "toy-models", "test_nll ↓")]
    present = [x for x in nll if x is not None]
    assert present == sorted(present) and nll[-1] is None  # ascending, the missing one last
    assert _column(page, "toy-models", "method")[-1] == "nce"  # nce reports no NLL
    page.locator("#toy-models thead th", has_text=re.compile(r"^test_nll ↓$")).click()
    nll = [float(x) if x != "–" else None for x in _column(page, "toy-models", "test_nll ↓")]
    present = [x for x in nll if x is not None]
    assert present == sorted(present, reverse=True) and nll[-1] is None  # missing still last
    assert "fisher_divergence ↓" not in page.eval_on_selector_all(
        "#toy-models thead th", "ths => ths.map(t => t.innerText.trim())"
    )


def test_filtering_to_one_method_leaves_only_that_method(page):
    before = _column(page, "toy-models", "method")
    assert len(set(before)) > 2
    page.select_option("#toy-models-method", "cd")
    after = _column(page, "toy-models", "method")
    assert after and set(after) == {"cd"} and len(after) == 3  # cd trained with three samplers
    page.select_option("#toy-models-method", "")
    assert _column(page, "toy-models", "method") == before
    page.fill("#toy-models_wrapper input[type=search]", "ula")
    page.wait_for_timeout(300)
    assert _column(page, "toy-models", "training sampler") == ["ula"]


def test_the_plots_render(page):
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    plots = page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => e.data.length)")
    assert len(plots) == 2 and all(n > 0 for n in plots)  # learning curves, cost vs quality
    assert page.locator("#toy-curves .scatterlayer .trace").count() >= 5


def test_the_degenerate_model_is_shown_apart_and_the_samplers_are_ranked(page):
    assert "spike" not in _column(page, "toy-models", "method")
    assert _column(page, "toy-unranked", "method") == ["spike"]
    assert _column(page, "toy-samplers-0", "sampler")[0] == "hmc"


def test_the_index_links_every_dataset_and_summarises(browser, site):
    _, url = site
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{url}/index.html")
    page.wait_for_selector("table.dataTable", timeout=60_000)
    assert page.locator("a[href='toy.html']").count() >= 1
    assert errors == []
    page.close()
