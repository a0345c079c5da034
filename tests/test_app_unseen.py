"""The Unseen sources page and bt_core.evaluation.held_out, on made-up leave-one-source-out records."""
import json

import numpy as np
import pytest

from app_fixtures import open_app, texts
from bt_core import runs
from bt_core.evaluation import held_out
from bt_core.serving.inference import DISCLAIMER

pytest.importorskip("streamlit.testing.v1")

RECIPE = {"model": "patch", "image_size": 128, "seed": 1, "symmetry": True, "cache_features": True}


def _loso(rid, label, config, shift, root):
    rng = np.random.default_rng(len(rid))
    held = {}
    for fam, srcs in (("lgg", ("lgg_flair", "lgg_t1c")), ("ixi", ("ixi_t1",))):
        y, src = [], []
        for s in srcs:
            n = 40
            labels = np.zeros(n, int) if fam == "ixi" else (np.arange(n) % 2)
            y += labels.tolist()
            src += [s] * n
        y = np.asarray(y)
        p = np.clip(np.where(y == 1, 0.7, 0.3) + shift + rng.normal(0, 0.15, len(y)), 0, 1)
        held[fam] = {"idx": list(range(len(y))), "y": y.tolist(), "prob": p.tolist(), "source": src}
    rec = {"mode": "loso", "config": config, "label": label, "command": f"python -m bt_core loso --seed {len(rid)}",
           "held_out": held, "status": "finished", "created": "2026-12-06T12:00:00"}
    if shift:  # this one went through loso-checks: half of each held-out family refused by the OOD check
        from bt_core.evaluation import fold_checks, metrics

        rec["checks"] = {"quantile": 0.96, "held_out": {}}
        for fam, h in held.items():
            h["per_source"] = metrics.per_source_metrics(h["y"], h["prob"], h["source"])
            flags = np.arange(len(h["y"])) % 2 == 0
            rec["checks"]["held_out"][fam] = fold_checks.summarise(
                h["y"], h["prob"], h["source"], flags, None if fam == "ixi" else np.zeros(len(flags), bool))
    runs.save_run(rec, None, root, run_id=rid)
    return rec


@pytest.fixture
def evidence(tmp_path, monkeypatch):
    registry, reports = tmp_path / "runs", tmp_path / "reports_runs"
    runs.save_run({"mode": "cv", "config": RECIPE, "label": "shipped"}, None, registry, run_id="ship")
    (registry / "shipped.json").write_text(json.dumps({"transfer": "ship"}))
    older = {k: v for k, v in RECIPE.items() if k != "symmetry"}  # a record from before an option: its default
    _loso("20261206-090000-patch-loso", "Before the option", older, 0.0, reports)
    _loso("20261206-100000-patch-loso", "The shipped recipe held out", {**RECIPE, "cache_features": False}, 0.0, reports)
    _loso("20261206-110000-patch-loso", "Another recipe", {**RECIPE, "seed": 2}, 0.25, reports)
    monkeypatch.setenv("BT_RUNS_DIR", str(registry))
    monkeypatch.setattr(held_out, "REPORTS_RUNS", reports)
    return registry, reports


def test_held_out_tables_scores_and_recipes(evidence):
    _, reports = evidence
    listed = held_out.loso_runs([reports])
    assert [r["id"] for r in listed] == ["20261206-110000-patch-loso", "20261206-100000-patch-loso",
                                         "20261206-090000-patch-loso"]
    assert held_out.recipe_runs(listed, RECIPE) == ["20261206-100000-patch-loso"]  # how it ran does not count
    assert held_out.recipe_runs(listed, {**RECIPE, "symmetry": False}) == ["20261206-090000-patch-loso"]
    rec = runs.load_run(listed[1]["dir"])
    table = held_out.source_table(rec).set_index("held-out source")
    assert list(table.index) == ["lgg_flair", "lgg_t1c", "ixi_t1"]
    h = rec["held_out"]["ixi"]
    assert table.loc["ixi_t1", "accuracy"] == pytest.approx(np.mean(np.asarray(h["prob"]) < 0.5))
    assert np.isnan(table.loc["ixi_t1", "auc"]) and np.isnan(table.loc["ixi_t1", "sensitivity"])  # one class
    assert table.loc["lgg_flair", "tumours"] == 20 and 0.5 < table.loc["lgg_flair", "auc"] <= 1
    y, p = held_out.source_scores(rec)["lgg_t1c"]
    assert len(y) == len(p) == 40
    curve = held_out.risk_coverage_curves(rec)["lgg"]
    assert curve[-1][0] == pytest.approx(1.0) and curve[0][1] >= curve[-1][1]  # the most confident first


def test_what_a_shipped_run_met_on_unseen_sources_at_its_own_threshold(evidence):
    from bt_core.evaluation.calibration import apply_temperature

    _, reports = evidence
    assert held_out.measured_by({"config": RECIPE}, [reports])["id"] == "20261206-100000-patch-loso"  # same recipe
    named = {"config": RECIPE, "abstain": {"loso_run": "20261206-110000-patch-loso"}}
    assert held_out.measured_by(named, [reports])["id"] == "20261206-110000-patch-loso"  # the band's own run wins
    gone = {"config": RECIPE, "abstain": {"loso_run": "20261201-000000-gone-loso"}}
    assert held_out.measured_by(gone, [reports])["id"] == "20261206-100000-patch-loso"  # not there: the recipe's
    assert held_out.measured_by({"config": {**RECIPE, "seed": 9}}, [reports]) is None
    assert held_out.measured_by({"config": RECIPE})["id"] == "20261206-100000-patch-loso"  # default roots
    rec = runs.load_run(held_out.measured_by({"config": RECIPE}, [reports])["dir"])
    table = held_out.unseen_at(rec, 0.3, temperature=2.0).set_index("held-out source")
    h = rec["held_out"]["ixi"]
    assert table.loc["ixi_t1", "specificity"] == pytest.approx(np.mean(apply_temperature(np.asarray(h["prob"]), 2.0) < 0.3))
    assert table.loc["ixi_t1", "specificity"] != pytest.approx(np.mean(np.asarray(h["prob"]) < 0.3))  # calibrated
    text = held_out.expectation(table.reset_index(), "x-loso", 0.3)
    worst = table["accuracy"].idxmin()
    assert text.startswith("on 3 sources it never saw (leave-one-source-out run `x-loso`, at threshold 0.30")
    assert f"weakest on {worst} ({100 * table['accuracy'].min():.0f}% right)" in text
    assert f"cleared {100 * table['specificity'].min():.0f} to {100 * table['specificity'].max():.0f}%" in text


def test_unseen_page_opens_on_the_shipped_recipe_and_compares_runs(evidence):
    at = open_app("pages/unseen.py")
    assert not at.error, texts(at.error)
    assert DISCLAIMER in texts(at.info)
    pick = at.multiselect(key="loso_runs")
    assert pick.value == ["The shipped recipe held out (20261206-100000-patch-loso)"]
    side = at.dataframe[0].value
    assert list(side.index) == ["lgg_flair", "lgg_t1c", "ixi_t1"] and list(side.columns) == ["20261206-100000-patch-loso"]
    assert all(str(v).endswith("%") for v in side.iloc[:, 0])
    roc, rc = (c.proto.spec for c in at.get("plotly_chart"))
    names = [t["name"] for t in json.loads(roc)["data"]]
    assert any(n.startswith("lgg_flair (AUC") for n in names) and not any(n.startswith("ixi_t1") for n in names)
    assert len(json.loads(rc)["data"]) == 2  # one curve per held-out family
    pick.set_value([*pick.value, "Another recipe (20261206-110000-patch-loso)"]).run()
    assert not at.exception and at.dataframe[0].value.shape[1] == 2
    checks = at.dataframe[-1].value.set_index("held-out source")  # only the second run has refusal checks
    assert list(checks.index) == ["lgg_flair", "lgg_t1c", "all 2 sources", "ixi_t1"]  # LGG's two also together
    assert list(checks["refused"]) == ["50.0%"] * 4
    assert checks.loc["ixi_t1", "by the plane check"] == "–" and checks.loc["lgg_flair", "by the plane check"] == "0.0%"
    assert len(at.dataframe) == 4  # side by side, two runs' tables, one checks table
    assert "python -m bt_core loso --seed" in texts(at.code)[0]


def test_unseen_page_says_how_to_make_a_run_when_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(held_out, "REPORTS_RUNS", tmp_path / "nothing")
    at = open_app("pages/unseen.py")
    assert any("No leave-one-source-out run" in t for t in texts(at.info))


def test_an_empty_held_out_record_is_a_clear_error_not_a_crash():
    with pytest.raises(ValueError, match="holds no held-out predictions"):
        held_out.expectation(held_out.unseen_at({"held_out": {}}, 0.5), "empty-loso", 0.5)
