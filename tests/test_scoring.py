"""bt_core.evaluation.scoring and one-class metrics: reports on labelled sets, one class alone included."""
import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from bt_core.evaluation import metrics, scoring


@dataclass
class FakeAnswer:
    name: str
    prob: float
    threshold: float
    tumour: bool
    ood: bool = False


class FakePredictor:
    """Answers from a fixed probability per image (its mean pixel / 255), flags images whose mean is 0."""

    def __init__(self, with_ood=True):
        self.ood = object() if with_ood else None
        self.calls = []
        self.threshold = 0.5

    def answer(self, pixels_list, names=None, threshold=None):
        self.calls.append(len(pixels_list))
        thr = self.threshold if threshold is None else threshold
        return [FakeAnswer(n, float(p.mean() / 255), thr, bool(p.mean() / 255 >= thr), bool(p.mean() == 0))
                for p, n in zip(pixels_list, names)]


def images_of(probs):
    return [np.full((4, 4), round(p * 255), np.uint8) for p in probs]


def test_defined_metrics_and_binary_metrics_with_one_class_give_nan_without_warnings():
    assert metrics.defined_metrics([0, 1, 1]) == ("accuracy", "sensitivity", "specificity", "auc")
    assert metrics.defined_metrics([0, 0]) == ("accuracy", "specificity")
    assert metrics.defined_metrics([1]) == ("accuracy", "sensitivity")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = metrics.binary_metrics([0, 0, 0, 0], [0.1, 0.2, 0.7, 0.3])
        ci = metrics.metrics_with_ci([0, 0, 0, 0], [0.1, 0.2, 0.7, 0.3])
    assert m["specificity"] == m["accuracy"] == 0.75 and math.isnan(m["sensitivity"]) and math.isnan(m["auc"])
    assert math.isnan(ci["auc"]["value"]) and ci["specificity"]["low"] < 0.75 < ci["specificity"]["high"]


def test_score_predictor_batches_and_reports_both_classes():
    probs = [0.9, 0.8, 0.3, 0.6, 0.1, 0.2, 0.0, 0.85]   # 0.0 is flagged by the fake detector
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    names = [f"img{i}.png" for i in range(8)]
    seen, pred = [], FakePredictor()
    rep = scoring.score_predictor(pred, images_of(probs), labels, names, batch_size=3,
                                  progress=lambda done, total: seen.append((done, total)), n_boot=200)
    assert pred.calls == [3, 3, 2] and seen == [(3, 8), (6, 8), (8, 8)]
    assert rep["classes"] == "both" and rep["shown"] == ["accuracy", "sensitivity", "specificity", "auc"]
    assert rep["confusion"] == [[3, 1], [1, 3]] and rep["metrics"]["accuracy"] == 0.75
    assert rep["ci"]["accuracy"]["low"] < 0.75 < rep["ci"]["accuracy"]["high"]
    assert 0 <= rep["ci"]["auc"]["low"] <= rep["metrics"]["auc"] <= rep["ci"]["auc"]["high"] <= 1
    assert rep["roc"]["fpr"][0] == 0 and rep["roc"]["tpr"][-1] == 1
    assert sum(rep["reliability"]["count"]) == 8 and 0 <= rep["ece"] <= 1
    assert rep["flagged"] == {"count": 1, "share": 0.125}
    assert rep["accepted"]["n"] == 7 and rep["accepted"]["accuracy"] == pytest.approx(5 / 7)
    table = rep["table"]
    assert [r["name"] for r in table[:2]] == ["img7.png", "img2.png"]  # misses first, most confident first
    assert all(not r["correct"] for r in table[:2]) and all(r["correct"] for r in table[2:])
    assert table[0]["label"] == "no tumour" and table[0]["decision"] == "tumour" and table[0]["index"] == 7
    assert [r["flagged"] for r in table].count(True) == 1


def test_one_class_alone_reports_specificity_and_no_auc_and_json_has_nulls():
    rep = scoring.score_predictor(FakePredictor(), images_of([0.1, 0.2, 0.9, 0.0]), [0, 0, 0, 0],
                                  ["a", "b", "c", "d"], sources=["ixi", "ixi", "ixi", "other"])
    assert rep["classes"] == "no" and rep["shown"] == ["accuracy", "specificity"]
    assert rep["roc"] is None and rep["metrics"]["specificity"] == 0.75
    assert rep["accepted"]["accuracy"] == pytest.approx(2 / 3) and rep["accepted"]["shown"] == ["accuracy", "specificity"]
    assert set(rep["per_source"]) == {"ixi", "other"} and rep["per_source"]["other"]["n"] == 1
    assert rep["per_source"]["ixi"]["specificity"] == pytest.approx(2 / 3)
    text = json.dumps(scoring.jsonable(rep), allow_nan=False)  # strict JSON: undefined figures are null
    back = json.loads(text)
    assert back["metrics"]["auc"] is None and back["ci"]["sensitivity"]["low"] is None


def test_only_tumours_report_sensitivity_and_no_detector_means_no_flag_figures():
    rep = scoring.score_predictor(FakePredictor(with_ood=False), images_of([0.9, 0.4]), [1, 1], ["a", "b"])
    assert rep["shown"] == ["accuracy", "sensitivity"] and rep["metrics"]["sensitivity"] == 0.5
    assert rep["flagged"] is None and rep["accepted"] is None and rep["per_source"] is None


def test_mismatched_labels_are_a_data_error():
    from bt_core.errors import DataError
    with pytest.raises(DataError):
        scoring.score_predictor(FakePredictor(), images_of([0.5, 0.5]), [1], ["a", "b"])
