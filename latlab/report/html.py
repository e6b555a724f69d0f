"""Offline HTML pages: no CDN, no network; the pages of one folder share one copy of plotly.js.

A :class:`Page` collects headings, notes, tables and plotly figures and renders one HTML file that opens
from disk (``file://``) on a machine with no network. :meth:`Page.write` puts the installed plotly
package's ``plotly.min.js`` (~4.7 MB) once into the page's folder (:func:`write_plotly_js`) and the page
loads it with a relative ``<script src>``; a page whose copy is missing says so above its first heading.
:meth:`Page.render` alone embeds plotly.js, for a page kept as a single string. Every page starts with a header naming the device fingerprint and
the command behind each run it shows (:meth:`Page.run_header`), because a latency means nothing without
the machine it was measured on.

Each page also carries a small self-check: scripts in the head record script errors, failed resource loads
and ``console.error``/``console.warn`` calls; after load, a hidden ``<pre id="latlab-selftest">`` is filled
with JSON ``{"plotly": bool, "figures": {div id: [{"name", "type", "points"}, ...]}, "errors": [...]}``
(``points`` = the length of each trace's data). The browser test reads it with ``chromium --dump-dom``;
a person can read it in the developer tools.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

SELFTEST_ID = "latlab-selftest"
PLOTLY_JS_NAME = "plotly.min.js"
PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
FINGERPRINT_SUMMARY_KEYS = ("cpu_model", "logical_cores", "threads", "device", "gpu_name", "torch",
                            "onnxruntime", "governor", "load_avg_1m")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:0 1.2em 3em;color:#222;line-height:1.4}
h1{margin:.6em 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
nav a{margin-right:1em}
.run{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.5em .8em;margin:.6em 0;
font-size:.88em}
.run code{white-space:pre-wrap;word-break:break-all}
.note{border-left:4px solid #0969da;background:#eef5ff;padding:.4em .8em;margin:.6em 0}
.note.warn{border-color:#bf8700;background:#fff8e1}
.scroll{overflow-x:auto;max-width:100%}
table.df{border-collapse:collapse;font-size:.82em;margin:.5em 0}
table.df th,table.df td{border:1px solid #d0d7de;padding:.2em .5em;text-align:right;vertical-align:top}
table.df th{background:#f6f8fa}table.df td.text{text-align:left}
.fig{margin:.8em 0}.caption{font-size:.85em;color:#555;margin:.2em 0 1em}
.with-panel{display:flex;gap:1em;align-items:flex-start}.with-panel>.fig{flex:0 0 calc(100% - 360px);width:calc(100% - 360px);min-width:0}
.panel{flex:0 0 340px;box-sizing:border-box;min-height:160px;max-height:620px;overflow:auto;background:#f6f8fa;border:1px solid #d0d7de;
border-radius:6px;padding:.5em;font-size:.8em}
.panel pre{white-space:pre-wrap;margin:0}
details summary{cursor:pointer}
"""

_ERROR_HOOK = """
window.__latlabErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) { window.__latlabErrors.push('failed to load ' + (t.src || t.href)); }
  else { window.__latlabErrors.push(String(e.message || e)); }
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__latlabErrors.push('unhandled: ' + e.reason); });
['error', 'warn'].forEach(function (level) {
  var orig = console[level];
  console[level] = function () {
    window.__latlabErrors.push('console.' + level + ': ' + Array.prototype.join.call(arguments, ' '));
    return orig.apply(console, arguments);
  };
});
"""

_SELFTEST = """
window.addEventListener('load', function () {
  var out = {plotly: typeof window.Plotly !== 'undefined', figures: {}, errors: window.__latlabErrors};
  document.querySelectorAll('.plotly-graph-div').forEach(function (gd) {
    // _fullData holds the decoded arrays (gd.data may keep plotly.py's base64 typed-array specs)
    var full = gd._fullData || [];
    out.figures[gd.id] = (gd.data || []).map(function (t, i) {
      var f = full[i] || t, n = 0;
      ['x', 'y', 'values', 'z'].some(function (k) { if (f[k] && f[k].length !== undefined) { n = f[k].length; return true; } return false; });
      return {name: t.name === undefined ? null : t.name, type: f.type || t.type || 'scatter', points: n};
    });
  });
  document.getElementById('SELFTEST_ID').textContent = JSON.stringify(out);
  if (!out.plotly && document.querySelector('.plotly-graph-div')) {
    var warn = document.createElement('div'); warn.className = 'note warn';
    warn.textContent = 'The charts need PLOTLY_JS_NAME next to this page: copy it with the page.';
    document.body.insertBefore(warn, document.querySelector('h1'));
  }
});
""".replace("SELFTEST_ID", SELFTEST_ID).replace("PLOTLY_JS_NAME", PLOTLY_JS_NAME)

# Click on a point whose customdata[0] holds text (a trial's YAML): show it in the figure's side panel.
_PANEL_JS = """
(function () {
  var gd = document.getElementById('%(div)s'), panel = document.getElementById('%(panel)s');
  if (!gd || !gd.on) { return; }
  gd.on('plotly_click', function (ev) {
    var p = ev.points && ev.points[0];
    if (!p || !p.customdata) { return; }
    var title = document.createElement('b'); title.textContent = String(p.customdata[1] || '');
    var pre = document.createElement('pre'); pre.textContent = String(p.customdata[0] || '(no YAML)');
    panel.replaceChildren(title, pre);
  });
})();
"""


def esc(text: Any) -> str:
    """HTML-escape any value's string form."""
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        if v == 0 or 1e-3 <= abs(v) < 1e6:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def df_to_html(df: pd.DataFrame, *, max_rows: int = 300) -> str:
    """An escaped HTML table of ``df`` (numbers right-aligned, text left), at most ``max_rows`` rows."""
    cols = list(df.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    rows = []
    for rec in df.head(max_rows).itertuples(index=False):
        cells = []
        for v in rec:
            cls = "" if isinstance(v, (int, float)) and not isinstance(v, bool) else ' class="text"'
            cells.append(f"<td{cls}>{esc(_fmt(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(df) > max_rows:
        more = f'<p class="caption">{len(df) - max_rows} more rows in the CSV.</p>'
    return (f'<div class="scroll"><table class="df"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table></div>{more}")


def fingerprint_line(fp: Mapping[str, Any]) -> str:
    """The fingerprint's key facts on one line (CPU, threads, device, torch...)."""
    parts = [f"{k}={fp[k]}" for k in FINGERPRINT_SUMMARY_KEYS if fp.get(k) not in (None, "")]
    return ", ".join(parts) if parts else "(no fingerprint recorded)"


@dataclass
class Page:
    """One self-contained report page. Add parts in order, then :meth:`write` (or :meth:`render`)."""

    title: str
    nav: list[tuple[str, str]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)
    _scripts: list[str] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)

    def _unique_id(self, base: str) -> str:
        base = _slug(base)
        uid, i = base, 1
        while uid in self._ids:
            i += 1
            uid = f"{base}-{i}"
        self._ids.add(uid)
        return uid

    def heading(self, text: str, level: int = 2) -> str:
        """Add a heading and return its anchor id."""
        hid = self._unique_id(text)
        self.parts.append(f'<h{level} id="{hid}">{esc(text)}</h{level}>')
        return hid

    def note(self, text: str, *, warn: bool = False) -> None:
        """Add a short explanatory (or warning) paragraph."""
        self.parts.append(f'<div class="note{" warn" if warn else ""}">{esc(text)}</div>')

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{esc(text)}</p>")

    def run_header(self, *, label: str, command: str | None, time: str | None, path: str,
                   fingerprint: Mapping[str, Any] | None, extras: Mapping[str, Any] | None = None) -> None:
        """The command, time, folder and device fingerprint of one run (shown on every page)."""
        fp = dict(fingerprint or {})
        extra = "".join(f"<br><b>{esc(k)}</b>: {esc(v)}" for k, v in (extras or {}).items())
        fp_rows = "".join(f"<tr><th>{esc(k)}</th><td class='text'>{esc(v)}</td></tr>" for k, v in fp.items())
        self.parts.append(
            f'<div class="run"><b>{esc(label)}</b> · <span>{esc(time or "time not recorded")}</span>'
            f"<br><b>command</b>: <code>{esc(command or '(not recorded)')}</code>"
            f"<br><b>folder</b>: <code>{esc(path)}</code>"
            f"<br><b>device</b>: {esc(fingerprint_line(fp))}{extra}"
            f"<details><summary>full fingerprint</summary><table class='df'>{fp_rows}</table></details></div>")

    def table(self, df: pd.DataFrame, *, caption: str | None = None, max_rows: int = 300) -> None:
        self.parts.append(df_to_html(df, max_rows=max_rows))
        if caption:
            self.parts.append(f'<p class="caption">{esc(caption)}</p>')

    def figure(self, fig: go.Figure, *, name: str, caption: str | None = None,
               click_panel: bool = False) -> str:
        """Add a plotly figure (its div id is returned; ``name`` seeds it).

        ``click_panel`` adds a side panel that shows ``customdata[0]`` (with ``customdata[1]`` as title) of
        the point clicked, e.g. a trial's YAML.
        """
        div_id = self._unique_id(f"fig-{name}")
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)
        fig_html = f'<div class="fig">{body}</div>'
        if click_panel:
            panel_id = f"{div_id}-panel"
            fig_html = (f'<div class="with-panel">{fig_html}<div class="panel" id="{panel_id}">'
                        "<b>Model YAML</b><p><i>Click a trial in the plot to show its YAML here.</i></p></div></div>")
            self._scripts.append(_PANEL_JS % {"div": div_id, "panel": panel_id})
        self.parts.append(fig_html)
        if caption:
            self.parts.append(f'<p class="caption">{esc(caption)}</p>')
        self.figures.append((div_id, fig))
        return div_id

    def raw(self, fragment: str) -> None:
        """Add an HTML fragment the caller built (and escaped) itself."""
        self.parts.append(fragment)

    def render(self, plotly_src: str | None = None) -> str:
        """The whole page as one HTML string. When it has figures it loads plotly.js from ``plotly_src`` (a
        path relative to the page), or, without one, carries plotly.js inside the page."""
        plotly_js = ""
        if self.figures:
            plotly_js = (f'<script src="{esc(plotly_src)}"></script>' if plotly_src is not None
                         else f"<script>{get_plotlyjs()}</script>")
        nav = ""
        if self.nav:
            nav = "<nav>" + "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in self.nav) + "</nav>"
        scripts = "".join(f"<script>{s}</script>" for s in self._scripts)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(self.title)}"
            f"</title><style>{_CSS}</style><script>{_ERROR_HOOK}</script>{plotly_js}</head><body>"
            f"{nav}<h1>{esc(self.title)}</h1>{''.join(self.parts)}{scripts}"
            f'<pre id="{SELFTEST_ID}" hidden></pre><script>{_SELFTEST}</script></body></html>\n')

    def write(self, path: Path | str) -> Path:
        """Write the page to ``path``; a page with figures shares the folder's ``plotly.min.js``."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if self.figures:
            write_plotly_js(out.parent)
        out.write_text(self.render(PLOTLY_JS_NAME), encoding="utf-8")
        return out


def write_plotly_js(folder: Path) -> Path:
    """The installed plotly package's plotly.js as ``folder/plotly.min.js``, for every page there to load.

    Written once: an identical copy is left alone, a different one (another plotly version) replaced
    atomically, so a page never sees half a file."""
    path = folder / PLOTLY_JS_NAME
    code = get_plotlyjs().encode("utf-8")
    if path.is_file() and path.stat().st_size == len(code) and path.read_bytes() == code:
        return path
    tmp = path.with_name(f"{PLOTLY_JS_NAME}.tmp")
    tmp.write_bytes(code)
    os.replace(tmp, path)
    return path


def figure_points(fig: go.Figure) -> list[tuple[str | None, int]]:
    """(trace name, number of points) per trace of a figure, the same count the page self-test reports."""
    out = []
    for tr in fig.data:
        n = 0
        for key in ("x", "y", "values", "z"):
            val = getattr(tr, key, None)
            if val is not None:
                n = len(val)
                break
        out.append((tr.name, n))
    return out

