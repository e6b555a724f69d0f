"""ShuffleNet V2's guideline experiments (G1-G4) reproduced on the user's device, and a guideline linter.

- ``paper``: the published Tables 1-5 as data, with the citation and latlab's readings of what the paper
  leaves open (``paper.NOTES``).
- ``experiments``: the G1-G4 networks and the configuration of every table row (``configurations``).
- ``verdict``: normalisation to the baseline row and the holds / partly / does not hold decision.
- ``run``: ``run_guidelines(...) -> GuidelineResults`` (what ``latlab guidelines`` calls).
- ``lint``: ``lint_model(cfg, ...) -> LintResult`` (what ``latlab lint`` calls).
"""

from latlab.guidelines.lint import LintResult, LintThresholds, lint_model
from latlab.guidelines.run import GuidelineResults, run_guidelines

__all__ = ["GuidelineResults", "LintResult", "LintThresholds", "lint_model", "run_guidelines"]
