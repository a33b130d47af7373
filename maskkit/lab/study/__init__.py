"""Comparative masking studies: maskers x seeds x ratios x patch sizes under one budget and protocol.

``run_study(StudyConfig(...))`` trains what is missing, evaluates every run and the baselines the
same way, and writes results.csv, report.md and figures; see docs/studies.md.
"""

from maskkit.lab.study.config import StudyConfig, load_study_toml, merge_study
from maskkit.lab.study.pipeline import StudyOutcome, run_study, write_outputs
from maskkit.lab.study.stats import PairedComparison, paired_comparison

__all__ = ["PairedComparison", "StudyConfig", "StudyOutcome", "load_study_toml", "merge_study",
           "paired_comparison", "run_study", "write_outputs"]
