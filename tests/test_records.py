"""bt_core.evaluation.records: what the comparison pages read from run records."""
import numpy as np
import pytest

from bt_core.errors import BTError
from bt_core.evaluation import records


def _rec(fold_acc, val_idx=None, fingerprint="f1", test_idx=(0, 1, 2, 3)):
    folds = [{"metrics": {"accuracy": a}, "train_idx": list(range(8)), "val_idx": (val_idx or [[k]])[0]}
             for k, a in enumerate(fold_acc)]
    return {"folds": folds, "data": {"fingerprint": fingerprint, "labels": [0, 1, 0, 1, 1, 0],
                                     "source": ["a", "a", "b", "b", "b", "a"],
                                     "sources": [{"name": "a", "n": 3}, {"name": "b", "n": 3}]},
            "oof": {"idx": [0, 1, 2, 3, 4, 5], "prob": [0.1, 0.9, 0.8, 0.7, 0.2, 0.4], "fold": [0, 0, 1, 1, 2, 2]},
            "test": {"idx": list(test_idx), "y": [0, 1, 0, 1], "prob": [0.2, 0.8, 0.6, 0.9]},
            "calibration": {"temperature": 2.0}}


def test_test_scores_apply_the_stored_temperature_only_when_asked():
    y, p = records.test_scores(_rec([0.9]), use_temperature=False)
    assert list(y) == [0, 1, 0, 1] and np.allclose(p, [0.2, 0.8, 0.6, 0.9])
    _, pt = records.test_scores(_rec([0.9]), use_temperature=True)
    assert pt[1] < 0.8 and pt[0] > 0.2  # a temperature above 1 pulls towards 0.5


def test_oof_curves_per_fold_and_pooled():
    curves = records.oof_curves(_rec([0.9, 0.8, 0.7]))
    assert list(curves) == ["fold 0", "fold 1", "fold 2", "all folds pooled"]
    y, p = curves["fold 1"]
    assert list(y) == [0, 1] and np.allclose(p, [0.8, 0.7])
    assert records.oof_curves({"oof": {}}) == {}


def test_same_test_images_says_why_not():
    a = _rec([0.9])
    assert records.same_test_images(a, _rec([0.8])) is None
    assert "different data" in records.same_test_images(a, _rec([0.8], fingerprint="f2"))
    assert "different test images" in records.same_test_images(a, _rec([0.8], test_idx=(0, 1, 2, 5)))


def test_sources_tables_split_figures_by_source():
    rec = _rec([0.9, 0.8, 0.7])
    table = records.sources_table(rec)
    assert list(table["source"]) == ["a", "b"]
    assert list(table["out-of-fold accuracy"]) == ["100.0%", "33.3%"]  # a: 0.1/0, 0.9/1, 0.4/0; b: 0.8/0, 0.7/1, 0.2/1
    rec["test"]["source"] = ["a", "a", "b", "b"]
    y, p = records.test_scores(rec, False)
    per = records.per_source_table(rec, y, p, 0.5)
    assert list(per["accuracy"]) == ["100.0%", "50.0%"]
    assert records.per_source_table({"test": {"y": [0], "prob": [0.1]}, "data": {}}, y[:1], p[:1], 0.5) is None


def test_compare_runs_both_t_tests_and_refuses_unequal_folds():
    out = records.compare(_rec([0.90, 0.92, 0.91]), _rec([0.80, 0.83, 0.81]), ("A", "B"))
    assert [r["test"] for r in out["rows"]][0].startswith("Paired t-test")
    assert out["rows"][0]["mean difference (A − B)"] == "+9.67 points" and out["warning"] is None
    assert float(out["rows"][1]["p"]) > float(out["rows"][0]["p"])  # the corrected test is more cautious
    assert "not even on the same data" in records.compare(_rec([0.9, 0.8]), _rec([0.7, 0.6], fingerprint="x"),
                                                           ("A", "B"))["warning"]
    with pytest.raises(BTError, match="same folds"):
        records.compare(_rec([0.9, 0.8]), _rec([0.7]), ("A", "B"))


def test_mean_of_runs_scores_the_mean_probability_of_runs_of_the_same_images():
    y = [0, 0, 1, 1]

    def rec(rid, prob, idx=(0, 1, 2, 3)):
        return {"id": rid, "data": {"fingerprint": "f"}, "wall_time_s": 60,
                "held_out": {"lgg": {"idx": list(idx), "y": y, "prob": prob, "source": ["lgg_flair"] * 4, "seconds": 30}}}

    a, b = rec("run-a", [0.6, 0.1, 0.4, 0.9]), rec("run-b", [0.2, 0.3, 0.8, 0.7])
    avg = records.mean_of_runs([a, b])
    h = avg["held_out"]["lgg"]
    np.testing.assert_allclose(h["prob"], [0.4, 0.2, 0.6, 0.8])
    m = h["per_source"]["lgg_flair"]
    assert m["accuracy"] == 1.0 and m["n"] == 4  # each run alone gets 3 of 4 right
    assert avg["id"] == "run-a+run-b" and "--average run-a run-b" in avg["command"] and avg["wall_time_s"] == 120
    assert a["held_out"]["lgg"]["prob"] == [0.6, 0.1, 0.4, 0.9]  # the runs themselves are unchanged
    with pytest.raises(BTError, match="different images"):
        records.mean_of_runs([a, rec("run-c", [0.5] * 4, idx=(4, 5, 6, 7))])
