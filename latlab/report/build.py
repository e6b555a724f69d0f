"""``build_report``: the library call behind ``latlab report``.

Finds the run folders under a results directory (:mod:`latlab.report.loaders`), writes one offline
page per kind of result found (``<out stem>-guidelines.html``, ``-profile``, ``-search``, ``-lut``, ``-fidelity``) and an
index page (``out``) that links them and lists every run with its command and device fingerprint. The pages
share one ``plotly.min.js`` beside them (:func:`latlab.report.html.write_plotly_js`).

A CSV of a run that cannot be read (empty, not CSV, not UTF-8) is named on its page and on the index (and the
CLI repeats it on stderr); the report is still written when anything else could be read. When not one table of
any run could be read, there is nothing to show: ``build_report`` raises ``LatlabError`` naming the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from latlab.errors import LatlabError
from latlab.report import fidelity, guidelines, lut, profile, search
from latlab.report.html import PLOTLY_JS_NAME, Page, df_to_html, esc, fingerprint_line
from latlab.report.loaders import KIND_TITLES, KINDS, Run, discover

BUILDERS: dict[str, Callable[[Page, list[Run]], None]] = {
    "guidelines": guidelines.build, "profile": profile.build, "search": search.build, "lut": lut.build,
    "fidelity": fidelity.build,
}
DEFAULT_NAME = "report.html"


@dataclass
class Report:
    """What ``build_report`` wrote: the index page, one page per kind, and the runs shown or skipped."""

    index: Path
    pages: dict[str, Path]
    runs: list[Run]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    built: dict[str, Page] = field(default_factory=dict)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{KIND_TITLES[k]} ({sum(r.kind == k for r in self.runs)} run(s))" for k in self.pages)
        return f"report {self.index}: {kinds}" + (f"; skipped {len(self.skipped)} folder(s)" if self.skipped else "")


def page_path(out: Path, kind: str) -> Path:
    """Where the page of ``kind`` goes next to the index ``out``."""
    return out.with_name(f"{out.stem}-{kind}{out.suffix or '.html'}")


def build_page(kind: str, runs: list[Run], nav: list[tuple[str, str]] | None = None) -> Page:
    """The page of one kind for ``runs`` (not written)."""
    page = Page(f"latlab · {KIND_TITLES[kind]}", nav=list(nav or []))
    bad = unreadable_files(runs)
    if bad:
        page.note(f"{len(bad)} file(s) could not be read and are missing from this page: "
                  + "; ".join(f"{p}: {why}" for p, why in bad), warn=True)
    BUILDERS[kind](page, runs)
    return page


def unreadable_files(runs: list[Run]) -> list[tuple[Path, str]]:
    """Every CSV of ``runs`` that could not be read, with why."""
    return [(p, why) for r in runs for p, why in r.unreadable.items()]


def _index(root: Path, pages: dict[str, Path], runs: list[Run], skipped: list[tuple[Path, str]],
           nav: list[tuple[str, str]]) -> Page:
    page = Page(f"latlab report · {root}", nav=nav)
    page.paragraph("Pages: " + ", ".join(f"{KIND_TITLES[k]} ({sum(r.kind == k for r in runs)} run(s))"
                                         for k in pages) + f". Every page opens offline; they share {PLOTLY_JS_NAME} "
                                                           "in this folder (copy it with them).")
    page.raw("<ul>" + "".join(f'<li><a href="{esc(p.name)}">{esc(KIND_TITLES[k])}</a></li>'
                              for k, p in pages.items()) + "</ul>")
    page.heading("Runs")
    rows = [{"page": KIND_TITLES[r.kind], "job": r.job, "folder": str(r.path), "time": r.time or "",
             "command": r.command or "", "device": fingerprint_line(r.fingerprint)} for r in runs]
    page.raw(df_to_html(pd.DataFrame(rows)))
    bad = unreadable_files(runs)
    if bad:
        page.heading("Files that could not be read")
        page.raw(df_to_html(pd.DataFrame([{"file": str(p), "why": why} for p, why in bad])))
    if skipped:
        page.heading("Folders not shown")
        page.raw(df_to_html(pd.DataFrame([{"folder": str(p), "why": why} for p, why in skipped])))
    return page


def build_report(results_dir: Path | str, out: Path | str | None = None) -> Report:
    """Write the report pages for everything under ``results_dir``; ``out`` is the index page
    (default ``<results_dir>/report.html``). Raises ``LatlabError`` when the folder holds no results."""
    found = discover(results_dir)
    bad = unreadable_files(found.runs)
    if bad and all(not r.csvs or set(r.unreadable) == set(r.csvs.values()) for r in found.runs):
        raise LatlabError(f"{found.root}: no table of its {len(found.runs)} run(s) could be read ("
                          + "; ".join(f"{p}: {why}" for p, why in bad[:5])
                          + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "") + ")")
    index = Path(out) if out is not None else found.root / DEFAULT_NAME
    kinds = [k for k in KINDS if found.of_kind(k)]
    pages = {k: page_path(index, k) for k in kinds}
    nav = [("Index", index.name)] + [(KIND_TITLES[k], p.name) for k, p in pages.items()]
    built = {}
    for k in kinds:
        page = build_page(k, found.of_kind(k), nav)
        page.write(pages[k])
        built[k] = page
    _index(found.root, pages, found.runs, found.skipped, nav).write(index)
    return Report(index, pages, found.runs, found.skipped, built, bad)
