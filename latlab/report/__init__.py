"""HTML reports of latlab run folders (plotly, self-contained, offline): see :func:`build_report`."""

from latlab.report.build import Report, build_report

__all__ = ["Report", "build_report"]
