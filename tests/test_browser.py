"""Headless Chromium opens every report page from a file:// URL, offline, and checks what it drew.

For each page (index, guidelines, profile, search, latency tables) built from the synthetic run folders of
``test_report_fixtures``: one ``chromium --headless --dump-dom --screenshot`` run with every network
request sent to a dead proxy (so a CDN reference would fail and be reported). The page's own self-test
(``<pre id="latlab-selftest">``, see ``latlab.report.html``) gives plotly's presence, the number of points of
every trace as plotly.js holds them (``gd._fullData``), and any script error, failed load or console
error/warning; Chromium's console log on stderr is checked too. Screenshots go to ``results/browser/``
(a CI artifact). Skipped when no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_fixtures import write_all

from latlab.report import build_report
from latlab.report.html import SELFTEST_ID, figure_points

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
SHOT_DIR = Path(__file__).resolve().parents[1] / "results" / "browser"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=4000",
         "--enable-logging=stderr", "--v=0")
WINDOW = {"index": "1300,900", "guidelines": "1300,2600", "profile": "1300,3400", "search": "1300,1900",
          "lut": "1300,1400"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")]


def open_page(page: Path, shot: Path, profile_dir: Path, window: str) -> tuple[dict, list[str]]:
    """Load ``page`` headless; return the self-test JSON and Chromium's console lines."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={window}",
           f"--screenshot={shot}", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(rf'<pre id="{SELFTEST_ID}"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m and m.group(1).strip(), f"{page.name}: self-test never ran (no JSON in the DOM)"
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return json.loads(html.unescape(m.group(1))), console


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("results")
    expected = write_all(root)
    return build_report(root, root / "report.html"), expected, tmp_path_factory.mktemp("chromium")


def test_pages_render_offline_without_errors_and_with_every_point(report) -> None:
    rep, expected, profile_dir = report
    SHOT_DIR.mkdir(parents=True, exist_ok=True)
    pages = {"index": rep.index, **rep.pages}
    assert set(pages) == {"index", "guidelines", "profile", "search", "lut"}
    seen: dict[str, dict] = {}
    for kind, path in pages.items():
        text = path.read_text()
        assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']?(https?:)?//", text), f"{kind}: remote asset"
        state, console = open_page(path, SHOT_DIR / f"{kind}.png", profile_dir / kind, WINDOW[kind])
        assert state["errors"] == [], f"{kind}: {state['errors']}"
        assert console == [], f"{kind}: console output {console}"
        assert (SHOT_DIR / f"{kind}.png").stat().st_size > 10_000
        if kind == "index":
            assert state["figures"] == {}
            continue
        assert state["plotly"] is True, f"{kind}: plotly.js did not load"
        built = dict(rep.built[kind].figures)
        assert set(state["figures"]) == set(built), kind
        for div, fig in built.items():
            drawn = [(t["name"], t["points"]) for t in state["figures"][div]]
            assert drawn == figure_points(fig), f"{kind} {div}"
        seen[kind] = state["figures"]
    # Counts fixed by the fixtures, as the browser holds them.
    fx = expected["search"]
    trials = {t["name"]: t["points"] for t in seen["search"]["fig-demo-trials"]}
    assert trials["feasible trials"] == fx.n_feasible
    assert trials["infeasible (over budget)"] == fx.n_infeasible
    assert trials["pruned (no accuracy → drawn at 0)"] == fx.n_pruned
    assert trials["seed baselines"] == len(fx.baselines)
    assert trials["Pareto front"] == len(fx.front)
    lut = {t["name"]: t["points"] for t in seen["lut"]["fig-20260101-000000-check"]}
    assert lut["within ±10%"] == expected["lut_inside"]
    assert lut["outside ±10%"] == 15 - expected["lut_inside"]
    models = {t["name"]: t["points"] for t in seen["profile"]["fig-models-scatter"]}
    assert models == {"models (madds)": 3, "models (mac_bytes)": 3}
    g1 = seen["guidelines"]["fig-quick-g1"]
    assert [t["points"] for t in g1 if t["name"] == "measured latency"] == [4, 4]  # 4 rows at ×1 and ×2


CLICK = """<script>window.addEventListener('load', function () {
  var gd = document.getElementById('fig-demo-trials');
  var i = gd.data.findIndex(function (t) { return t.name === 'feasible trials'; });
  gd.emit('plotly_click', {points: [{customdata: gd._fullData[i].customdata[0]}]});
  var out = document.createElement('pre'); out.id = 'clicked';
  out.textContent = document.getElementById('fig-demo-trials-panel').textContent;
  document.body.appendChild(out);
});</script>"""


def test_click_shows_the_trial_yaml(report) -> None:
    """A click on a trial (plotly's own event, emitted on the figure) fills the side panel with its YAML."""
    rep, _, profile_dir = report
    page = rep.pages["search"].with_name("search-click.html")  # beside the report: it loads plotly.min.js
    page.write_text(rep.pages["search"].read_text().replace("</body>", CLICK + "</body>"))
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir / 'click'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r'<pre id="clicked">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    shown = html.unescape(m.group(1))
    fig = dict(rep.built["search"].figures)["fig-demo-trials"]
    yaml_text, title = next(t for t in fig.data if t.name == "feasible trials").customdata[0]
    assert shown == title + yaml_text and "width_multiple" in yaml_text


def test_a_page_copied_without_plotly_js_says_so(report, tmp_path: Path) -> None:
    """The pages share the folder's plotly.min.js; a page copied alone names the missing file on screen."""
    rep, _, profile_dir = report
    page = tmp_path / rep.pages["lut"].name
    page.write_text(rep.pages["lut"].read_text())
    state, _ = open_page(page, tmp_path / "lone.png", profile_dir / "lone", WINDOW["lut"])
    assert state["plotly"] is False
    assert any("plotly.min.js" in e for e in state["errors"]), state["errors"]
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir / 'lone-dom'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert "The charts need plotly.min.js next to this page" in proc.stdout
