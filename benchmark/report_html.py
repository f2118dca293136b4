"""``report/index.html``: one self-contained page per report folder, readable offline in any browser.

It holds what the report folder holds, in reading order: the class-incremental and distillation tables with the
published numbers beside the measured ones (converted from ``tables.md`` / ``dfkd_tables.md``, so the page and the
Markdown never disagree), every plot inline (PNG as ``data:`` URIs: the page is one file, it can be mailed or
attached to a paper review), how each profile differs from ``paper``, one row per cell with a link to its
``result.json``, the provenance table, and links to the CSV / LaTeX copies.  No JavaScript library, no network:
a short inline script only marks images that failed to decode (``data-broken-images`` on ``<body>``), which the
browser test reads.

The Markdown converter covers exactly what the suite's reports write (headings, pipe tables, bullet lists,
paragraphs, inline code and bold); it is not a general Markdown implementation.
"""
from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

PAGE = "index.html"

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1500px;
padding:0 24px 48px;color:#1d1d1f;line-height:1.45}
h1{margin-top:24px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}h3{margin-top:26px}
nav{background:#f5f5f7;padding:8px 14px;border-radius:6px}nav a{margin-right:16px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d2d2d7;padding:3px 8px;white-space:nowrap}th{background:#f5f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}
code{background:#f0f0f2;padding:0 3px;border-radius:3px}figure{margin:12px 0 26px}
figure img{max-width:100%;border:1px solid #e5e5ea}figcaption{font-size:13px;color:#555}
.gallery{display:flex;flex-wrap:wrap;gap:14px}.gallery figure{margin:0}.gallery img{max-height:320px}
.note{color:#555;font-size:13px}
"""

_SCRIPT = """
window.addEventListener('load',function(){var b=0;document.querySelectorAll('img').forEach(function(i){
if(!i.complete||i.naturalWidth===0){b++;}});document.body.setAttribute('data-broken-images',String(b));});
"""


# -- Markdown (the subset the reports write) ------------------------------------------------------------------------
def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?\d+(\.\d+)?( ± \d+(\.\d+)?)?( \(n=\d+\))?", text.strip()))


def _table(lines: list[str]) -> str:
    head, body = _cells(lines[0]), [_cells(ln) for ln in lines[2:]]
    rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    for r in body:
        r = ["\u2013" if c.lower() == "nan" else c for c in r]  # a phase the protocol does not have
        rows.append("<tr>" + "".join(f'<td class="num">{_inline(c)}</td>' if _is_number(c) else f"<td>{_inline(c)}</td>"
                                     for c in r) + "</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def markdown_to_html(md: str, shift: int = 1) -> str:
    """The suite's report Markdown as HTML; headings move down ``shift`` levels (the page has its own ``<h1>``)."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        ln = lines[i]
        if not ln.strip():
            i += 1
        elif ln.startswith("#"):
            level = min(6, len(ln) - len(ln.lstrip("#")) + shift)
            out.append(f"<h{level}>{_inline(ln.lstrip('#').strip())}</h{level}>")
            i += 1
        elif ln.lstrip().startswith("|"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif ln.startswith("- "):
            items = []
            while i < len(lines) and (lines[i].startswith("- ") or (lines[i].startswith("  ") and items)):
                if lines[i].startswith("- "):
                    items.append(lines[i][2:])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


# -- the page -----------------------------------------------------------------------------------------------------
def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _caption(name: str) -> str:
    stem = Path(name).stem
    if stem == "seen_accuracy":
        return "Accuracy on the classes seen so far after each phase (RGAL Figures 10-11 layout), published beside"
    if stem.startswith("heatmap-"):
        return f"Accuracy matrix {stem[len('heatmap-'):]}: after phase k (rows), on class group j (columns)"
    return {"dfkd_accuracy_curves": "Student top-1 per epoch and against training wall time",
            "dfkd_tsne": "t-SNE of the teacher's embeddings of synthetic images"}.get(stem, stem)


def _link(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target, page_dir)).as_posix()


def cells_table(results: list[dict], page_dir: Path) -> str:
    """One row per cell: what it is, its headline number, and a link to its ``result.json``."""
    head = ["cell", "task", "scenario", "method", "protocol", "seed", "profile", "headline", "result"]
    rows = []
    for r in sorted(results, key=lambda r: Path(r["_path"]).parent.name):
        c, path = r["cell"], Path(r["_path"])
        task = c.get("task", "cil")
        if task in ("dfkd", "dfq"):
            bits = c.get("bits")
            proto = f"{c['teacher']}->{c['student']}" if task == "dfkd" else \
                f"{c['teacher']} W{bits['weights']}A{bits['activations']}" if bits else c["teacher"]
            head_fig = " / ".join(f"{name} top-1 {100 * m['top1']:.2f} %" for name, m in r["rows"].items())
        else:
            proto = f"{c['phases']} phases"
            head_fig = " / ".join(f"{name} avg {100 * m['average_accuracy']:.2f} %" for name, m in r["rows"].items())
        rows.append([path.parent.name, c.get("task", "cil"), c["scenario"], c["method"], proto, str(c["seed"]),
                     c["profile"], head_fig, f'<a href="{html.escape(_link(path, page_dir))}">result.json</a>'])
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{v if i == len(r) - 1 else html.escape(v)}</td>" for i, v in enumerate(r))
                   + "</tr>")
    return "\n".join(out + ["</table>"])


def gap_section(results: list[dict]) -> str:
    gaps: dict[str, str] = {}
    for r in results:
        gap = r.get("profile_gap_to_paper")
        if gap:
            c = r["cell"]
            task = {"dfkd": "distillation", "dfq": "quantization"}.get(c.get("task"), "class-incremental")
            gaps.setdefault(f"{c['profile']} ({task}, {c['scenario']})", gap)
    if not gaps:
        return "<p>Every cell ran the <code>paper</code> profile.</p>"
    return "<ul>" + "".join(f"<li><strong>{html.escape(k)}</strong>: {html.escape(v)}</li>"
                            for k, v in sorted(gaps.items())) + "</ul>"


def write_index(rep: Path, written: list[Path], results: list[dict]) -> Path:
    """``rep/index.html`` from the files the report wrote (``written``) and the results behind them."""
    names = {Path(p).name: Path(p) for p in written}
    pngs = sorted(n for n in names if n.endswith(".png"))
    cil_png = [n for n in pngs if not n.startswith("dfkd_")]
    dfkd_png = [n for n in pngs if n.startswith("dfkd_")]
    nav, body = [], []

    def md_section(anchor: str, name: str):  # the file's own title heads the section
        md = names[name].read_text()
        first, _, rest = md.partition("\n")
        title = first.lstrip("#").strip() if first.startswith("# ") else name
        section(anchor, title, markdown_to_html(rest if first.startswith("# ") else md, shift=1))

    def section(anchor: str, title: str, content: str):
        nav.append(f'<a href="#{anchor}">{html.escape(title)}</a>')
        body.append(f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{content}\n</section>')

    if "tables.md" in names:
        md_section("cil", "tables.md")
    if cil_png:
        main = [n for n in cil_png if not n.startswith("heatmap-")]
        heat = [n for n in cil_png if n.startswith("heatmap-")]
        content = "".join(_figure(names[n], _caption(n)) for n in main)
        if heat:
            content += ('<h3>Accuracy matrices</h3><div class="gallery">'
                        + "".join(_figure(names[n], _caption(n)) for n in heat) + "</div>")
        section("cil-plots", "Class-incremental plots", content)
    if "dfq_tables.md" in names:
        md_section("dfq", "dfq_tables.md")
    if "dfkd_tables.md" in names:
        md_section("dfkd", "dfkd_tables.md")
    if dfkd_png:
        section("dfkd-plots", "Distillation plots", "".join(_figure(names[n], _caption(n)) for n in dfkd_png))
    section("gap", "How each profile differs from paper", gap_section(results))
    section("cells", "Cells", cells_table(results, rep))
    if "provenance.md" in names:
        md_section("provenance", "provenance.md")
    data = sorted(n for n in names if n.endswith((".csv", ".tex", ".md")))
    section("files", "Files of this report", "<ul>" + "".join(
        f'<li><a href="{html.escape(n)}">{html.escape(n)}</a></li>' for n in data) + "</ul>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Benchmark report</title>'
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head>\n<body>\n<h1>Benchmark report</h1>\n"
            f'<p class="note">{len(results)} result files, read by <code>run_benchmark.py report</code> (the page '
            f"is built from the <code>result.json</code> files alone; when each cell finished: Provenance). Every "
            f"figure is inside this file.</p>\n"
            f"<nav>{''.join(nav)}</nav>\n" + "\n".join(body) + "\n</body></html>\n")
    path = rep / PAGE
    path.write_text(page)
    return path


def page_summary(path: Path) -> dict:
    """What a page holds, read back from its HTML (tables, images, links): for checks and tests."""
    text = Path(path).read_text()
    return {"tables": text.count("<table>"), "images": re.findall(r'<img [^>]*src="([^"]+)"', text),
            "links": re.findall(r'<a href="([^"#][^"]*)"', text)}

