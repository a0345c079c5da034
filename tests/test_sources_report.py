"""tools/sources_report.py: the side-by-side table of leave-one-source-out runs (made-up records)."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("sources_report", Path(__file__).parents[1] / "tools" / "sources_report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _rec(rid, label, per_source):
    return {"id": rid, "label": label, "config": {"model": "compact_cnn"},
            "held_out": {fam: {"per_source": srcs} for fam, srcs in per_source.items()}}


def test_comparison_puts_each_runs_held_out_accuracy_and_auc_side_by_side():
    a = _rec("run-a", "A", {"lgg": {"lgg_flair": {"accuracy": 0.727, "auc": 0.744}},
                            "ixi": {"ixi_t1": {"accuracy": 0.707, "auc": float("nan")}}})
    b = _rec("run-b", "B", {"ixi": {"ixi_t1": {"accuracy": 0.432, "auc": None}}})
    lines = report.comparison_section([a, b])
    assert lines[2] == "| held-out source | A (`run-a`) | B (`run-b`) |"
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in lines[4:] if ln}
    assert rows["lgg_flair"] == "| lgg_flair | 72.7% (0.744) | – |"  # B never held it out
    assert rows["ixi_t1"] == "| ixi_t1 | 70.7% | 43.2% |"  # one class: no AUC
    assert list(rows) == ["lgg_flair", "ixi_t1"]
