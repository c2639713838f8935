"""Open the built website in headless Chromium with the network off, as a reader would.

Run after the book is built (`make book`; `make check-site` runs this file). Checks that formulas
are typeset by the local MathJax (no raw TeX left), that every image loads, that search works, and
that no page tries to reach another machine. Saves screenshots under _build/screenshots/.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


PAGES = toc_pages()
MATH_PAGES = [p for p in PAGES if p.startswith("notebooks/") or p == "book/preface"]

pytestmark = [
    pytest.mark.skipif(not (HTML / "index.html").exists(), reason="build the book first: make book"),
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make chromium)"),
]


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            # the network is off: no name resolves except the local server's address
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A page whose every request to anything but the local server is recorded and refused."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def route(r):
        url = urlparse(r.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            outside.append(r.request.url)
            return r.abort()
        return r.continue_()

    context.route("**/*", route)
    pg = context.new_page()
    pg.outside_requests = outside
    yield pg
    context.close()


def open_page(page, server, name):
    page.goto(f"{server}/{name}.html", wait_until="load")
    page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)")
    page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")


@pytest.mark.parametrize("name", PAGES)
def test_page_is_self_contained(page, server, name):
    open_page(page, server, name)
    assert page.outside_requests == [], f"{name} tried to leave the machine: {page.outside_requests}"
    # every image has loaded (force lazy images to load first)
    broken = page.evaluate("""async () => {
        const imgs = [...document.images];
        for (const img of imgs) { img.loading = 'eager'; img.scrollIntoView(); }
        await Promise.all(imgs.map(img => img.decode().catch(() => null)));
        return imgs.filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src.slice(0, 80));
    }""")
    assert broken == [], f"{name}: images that did not load: {broken}"


@pytest.mark.parametrize("name", [p for p in PAGES if p.startswith("notebooks/")])
def test_code_cells_do_not_scroll_sideways(page, server, name):
    """The visible code of a chapter fits the page's code column (tests/test_notebooks.py keeps its
    lines within PAGE_WIDTH characters; this checks that the page really shows that many). The
    Colab setup cell is exempt, as there: CONTRIBUTING.md and `make colab` fix its exact text."""
    open_page(page, server, name)
    wide = page.evaluate("""() => [...document.querySelectorAll('.cell_input pre')]
        .filter(pre => !pre.innerText.includes('google.colab'))  // the setup cell: its exact text is fixed
        .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
        .map(pre => pre.innerText.split('\\n').sort((a, b) => b.length - a.length)[0].slice(0, 100))""")
    assert wide == [], f"{name}: code cells that scroll sideways, longest lines: {wide}"


@pytest.mark.parametrize("name", MATH_PAGES)
def test_formulas_are_typeset(page, server, name):
    open_page(page, server, name)
    typeset = page.locator("mjx-container").count()
    assert typeset > 0, f"{name}: MathJax typeset nothing"
    text = page.evaluate("""() => {
        const main = document.querySelector('main') || document.body;
        const clone = main.cloneNode(true);
        clone.querySelectorAll('pre, code, mjx-container, script, style, .highlight').forEach(e => e.remove());
        return clone.innerText;
    }""")
    for raw in ("$$", "\\[", "\\(", "\\frac", "\\mathcal"):
        assert raw not in text, f"{name}: raw TeX {raw!r} left on the page"
    assert page.outside_requests == []


def test_search_finds_chapter_one(page, server):
    page.goto(f"{server}/search.html?q=perplexity", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    hits = page.locator("#search-results ul.search li a").all_inner_texts()
    assert any("Background" in h for h in hits), hits
    assert page.outside_requests == []


def test_screenshot_of_chapter_one(page, server):
    open_page(page, server, "notebooks/background")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "background.png"))
    page.locator("#background-ngram").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "background_ngram.png"))
    assert (SHOTS / "background.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", [p for p in PAGES if p.startswith("notebooks/")])
def test_screenshot_of_each_chapter(page, server, name):
    """A first-screen picture of every chapter, for people to look at (_build/screenshots/)."""
    open_page(page, server, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name.split('/')[-1]}_top.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
