"""``report/index.html``: the Markdown subset converted exactly, every table and plot of a real report on the page
(plots inline, so the page is one file), every link resolving, and a real browser (headless Chromium) rendering it
with no broken image.  The browser test skips where Chromium is not installed, except under ``REQUIRE_BROWSER=1``
(``.ci/run`` installs the Debian package and sets it)."""
import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.report_html import markdown_to_html, page_summary
from benchmark.report_writer import write_reports
from conftest import ROOT

# a class-incremental sweep and a distillation one, both committed: the page covers both tasks
FOLDERS = [ROOT / "results" / "cil-baselines-cpu", ROOT / "results" / "dfkd-mnist-cpu"]


def test_markdown_subset():
    md = ("# Title\n\n## Part `a`\n\nSome **bold** text\ncontinued <here>.\n\n"
          "|   | x | y |\n|:--|--:|:--|\n| m | 1.50 ± 0.20 (n=3) | - |\n| n | nan | z |\n\n- one\n- two `c`\n")
    assert markdown_to_html(md, shift=1) == (
        "<h2>Title</h2>\n<h3>Part <code>a</code></h3>\n<p>Some <strong>bold</strong> text continued &lt;here&gt;.</p>\n"
        "<table>\n<tr><th></th><th>x</th><th>y</th></tr>\n"
        '<tr><td>m</td><td class="num">1.50 ± 0.20 (n=3)</td><td>-</td></tr>\n'
        "<tr><td>n</td><td>\u2013</td><td>z</td></tr>\n</table>\n"
        "<ul><li>one</li><li>two <code>c</code></li></ul>")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    rep = tmp_path_factory.mktemp("report")
    written = write_reports(FOLDERS, rep)
    return rep, written


def test_page_holds_every_table_and_plot_and_links_resolve(page):
    rep, written = page
    index = rep / "index.html"
    assert index in written
    got = page_summary(index)
    md_tables = sum(len(re.findall(r"(?m)^\|[-:| ]+\|$", p.read_text())) for p in written if p.suffix == ".md")
    assert got["tables"] == md_tables + 1  # every Markdown table, and the table of cells
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) >= 3 and len(got["images"]) == len(pngs)
    inlined = {src.split(",", 1)[1] for src in got["images"]}
    assert inlined == {base64.b64encode(p.read_bytes()).decode() for p in pngs}  # inline: no file to lose
    results = list(Path(FOLDERS[0]).glob("*/result.json")) + list(Path(FOLDERS[1]).glob("*/result.json"))
    linked = [(rep / link).resolve() for link in got["links"]]
    assert all(p.is_file() for p in linked), [p for p in linked if not p.is_file()]
    assert {p.resolve() for p in results} <= set(linked)  # a link to every cell's result.json
    text = index.read_text()
    for needle in ("How each profile differs from paper", "published", "Provenance", "teacher"):
        assert needle in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_a_real_browser_renders_the_page(page, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("needs headless Chromium (Debian package chromium)")
    rep, written = page
    url = (rep / "index.html").resolve().as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    # the page's script ran after load and counted the images that failed to decode
    m = re.search(r'data-broken-images="(\d+)"', dom)
    assert m is not None, dom[:500]
    assert m.group(1) == "0"
    assert dom.count("<img ") == sum(p.suffix == ".png" for p in written)
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1280,2000", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, tables and plots, not a blank page
