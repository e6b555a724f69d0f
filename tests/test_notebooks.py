"""The notebooks run top to bottom (nbclient, the venv's python3 kernel) in a scratch folder, so they never rot.

Each writes its run folders and report under ``results/`` of the scratch folder; the test checks the report
pages it built exist and hold their figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PAGES = {"01_guidelines.ipynb": ("report-01-guidelines.html",), "02_profile.ipynb": ("report-02-profile.html",),
         "04_fidelity.ipynb": ("report-04-fidelity.html",),
         "03_search.ipynb": ("report-03-search.html",)}

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(PAGES))
def test_notebook_runs(name: str, tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(book, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    for page in PAGES[name]:
        text = (tmp_path / "results" / page).read_text()
        assert "plotly-graph-div" in text
