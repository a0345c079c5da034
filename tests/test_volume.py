"""bt_core.serving.volume (scoring a scan slice by slice, ranking its slices) and the run names of bt_core.runs."""
import numpy as np

from bt_core import runs
from bt_core.serving import volume
from bt_core.serving.inference import Answer


class FakePredictor:
    """Answers with the slice's mean brightness as its probability; refuses slices brighter than ``refuse``."""

    def __init__(self, name, refuse=2.0):
        self.name, self.refuse, self.calls = name, refuse, []

    def answer(self, pixels_list, names):
        self.calls.append(len(pixels_list))
        probs = [float(p.mean()) / 255 for p in pixels_list]
        return [Answer(n, p, 0.5, p >= 0.5, ood=p > self.refuse, reason="unlike the training data" if p > self.refuse
                       else None) for n, p in zip(names, probs)]


def test_score_slices_batches_reports_progress_and_ranks_the_most_suspicious_first():
    slices = [np.full((4, 4), v, np.uint8) for v in (10, 200, 90, 250, 30)]
    cnn, transfer, seen = FakePredictor("cnn"), FakePredictor("transfer", refuse=0.95), []
    out = volume.score_slices({"cnn": cnn, "transfer": transfer}, slices, batch=2,
                              progress=lambda f, text: seen.append(f))
    assert cnn.calls == [2, 2, 1] and [a.name for a in out["cnn"]] == [f"slice {i}" for i in range(1, 6)]
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert out["transfer"][3].ood and not out["cnn"][3].ood
    assert volume.rank_slices(out) == [3, 1, 2, 4, 0]  # the CNN still answers slice 4
    everyone_refuses = {"t": [a for a in out["transfer"]]}
    assert volume.rank_slices(everyone_refuses) == [1, 2, 4, 0, 3]  # refused slice last
    assert volume.suspicion(everyone_refuses, 3) is None


def test_short_names_and_prediction_sources_are_robust_to_old_records():
    old = {"id": "20261126-123947-transfer-efficientnet_lite0-group-cv", "created": "2026-11-26T12:39:47",
           "config": {"model": "transfer", "backbone": "efficientnet_lite0"}, "data": {"root": "/x/br35h"},
           "test": {"y": [0, 1], "idx": [3, 4]}}
    assert runs.short_name(old) == "transfer Lite0 · br35h · 2026-11-26"
    assert runs.prediction_sources(old) is None
    multi = {"id": "20270101-000000-compact_cnn-group-cv", "config": {"model": "compact_cnn"},
             "data": {"sources": [{"name": s} for s in ("br35h", "lgg_flair", "ixi_t1", "brats")],
                      "source": ["br35h", "ixi_t1", "lgg_flair", "brats"]},
             "test": {"y": [0, 1], "idx": [2, 1]}}
    assert runs.short_name(multi) == "CNN · br35h+lgg_flair+ixi_t1+1 more · 2027-01-01"
    assert runs.prediction_sources(multi) == ["lgg_flair", "ixi_t1"]
    multi["test"]["source"] = ["a", "b"]
    assert runs.prediction_sources(multi) == ["a", "b"]
    assert runs.short_name({}) == "model"
