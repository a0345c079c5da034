"""Evaluation and statistics: metrics, tests, calibration, the out-of-distribution check, figures, reports.

- :mod:`~bt_core.evaluation.metrics`: accuracy, sensitivity, specificity, AUC with confidence intervals.
- :mod:`~bt_core.evaluation.stats`: paired and corrected t-tests, McNemar, DeLong.
- :mod:`~bt_core.evaluation.scoring`: a model scored on a labelled set (yours), one class alone included.
- :mod:`~bt_core.evaluation.calibration`, :mod:`~bt_core.evaluation.posthoc`: temperature, operating point.
- :mod:`~bt_core.evaluation.ood`, :mod:`~bt_core.evaluation.probes`: unlike-the-training-data check and probes.
- :mod:`~bt_core.evaluation.abstain`, :mod:`~bt_core.evaluation.plane`: when not to answer, and which plane a slice is.
- :mod:`~bt_core.evaluation.fold_checks`: the refusal checks fitted per leave-one-source-out fold, judged on the held-out source.
- :mod:`~bt_core.evaluation.held_out`: leave-one-source-out records read back per held-out source, for display.
- :mod:`~bt_core.evaluation.figures` (PNG, matplotlib), :mod:`~bt_core.evaluation.plots` (plotly).
- :mod:`~bt_core.evaluation.reproduce`: the paper's whole protocol -> ``reports/reproduction.md``.
"""
