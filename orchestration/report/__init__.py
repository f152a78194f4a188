"""Study reports: the study table and plot (:mod:`~orchestration.report.study`) and the fronts
reporter (:mod:`~orchestration.report.fronts`)."""

from orchestration.report.study import (
    TrialRecord,
    is_sr,
    study_csv,
    study_figure,
    study_markdown,
    study_plot,
    study_rows,
)

__all__ = ["TrialRecord", "is_sr", "study_csv", "study_figure", "study_markdown", "study_plot", "study_rows"]
