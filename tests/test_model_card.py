"""tools/make_model_card.py: the held-out range comes from the matching leave-one-source-out run."""
import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("make_model_card", Path(__file__).parents[1] / "tools" / "make_model_card.py")
card = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(card)


def _loso(runs, rid, config, accs):
    (runs / rid).mkdir(parents=True)
    held = {f"fam{i}": {"per_source": {f"src{i}": {"accuracy": a}}} for i, a in enumerate(accs)}
    (runs / rid / "run.json").write_text(json.dumps({"id": rid, "mode": "loso", "config": config, "held_out": held}))


def test_held_out_range_reads_the_run_of_the_same_recipe(tmp_path):
    cnn = {"model": "compact_cnn", "lr": 1e-3, "precision": None}
    _loso(tmp_path, "20261201-a-loso", {"model": "compact_cnn", "lr": 1e-3, "precision": "float32"}, [0.432, 0.617])
    _loso(tmp_path, "20261202-b-loso", {"model": "compact_cnn", "lr": 3e-4}, [0.9, 0.95])  # another recipe
    lo = card.held_out_run({"config": cnn}, tmp_path)
    assert lo["id"] == "20261201-a-loso"
    assert card.held_out_range(lo).startswith("43 to 62% (leave-one-source-out run `20261201-a-loso`")
    # a band names its run: that one wins, whatever the config says
    named = card.held_out_run({"config": {"model": "patch"}, "abstain": {"loso_run": "20261202-b-loso"}}, tmp_path)
    assert named["id"] == "20261202-b-loso"
    assert "unmeasured" in card.held_out_range(card.held_out_run({"config": {"model": "patch"}}, tmp_path))


def test_refusal_sentence_compares_accepted_with_all_on_unseen_sources():
    lo = {"id": "x-loso", "held_out": {"a": {"per_source": {"a1": {"accuracy": 0.8}}},
                                       "b": {"per_source": {"b1": {"accuracy": 0.7}}}},
          "checks": {"held_out": {"a": {"per_source": {"a1": {"refused": 0.5, "accuracy_accepted": 0.75}}},
                                  "b": {"per_source": {"b1": {"refused": 0.05, "accuracy_accepted": None}}}}}}
    text = card.refusal_sentence(lo)
    assert "refuse 5 to 50%" in text and "is 75 to 75%" in text and "against 70 to 80%" in text
    assert "not been judged" in card.refusal_sentence({"id": "y", "held_out": {}})


def test_position_sentence_reads_the_lgg_test_part_by_slice_position(tmp_path):
    src = tmp_path / "lgg_flair"
    src.mkdir()
    rows = ["file,label,group,slice"] + [f"{c}/P_{s}.png,{c},P,{s}" for c in ("no", "yes") for s in range(8)]
    (src / "metadata.csv").write_text("\n".join(rows) + "\n")
    paths = [f"lgg_flair/{r.split(',')[0]}" for r in rows[1:]]
    y = [0] * 8 + [1] * 8
    # no-tumour slices: wrong in the middle half (slices 2-5), right at the edges; tumour slices all right
    prob = [0.9 if 2 <= s <= 5 else 0.1 for s in range(8)] + [0.9] * 8
    rec = {"config": {"balance": "position"}, "data": {"paths": paths, "sources": [{"name": "lgg_flair", "root": str(src)}]},
           "test": {"idx": list(range(16)), "y": y, "prob": prob, "source": ["lgg_flair"] * 16}}
    text = card.position_sentence(rec)
    assert "no-tumour slices in the middle half of a volume are right 0.00% of the time, at the top and bottom 100.00%" in text
    assert "(`--balance position`)" in text
    half = card.position_sentence({**rec, "config": {"balance": "position", "position_strength": 0.5}})
    assert "balanced out of the label part of the way (`--balance position --position-strength 0.5`)" in half
    tumour = card.position_detail({"balance": "position", "position_reference": "tumour"})
    assert tumour == " (`--balance position --position-reference tumour`)"
    assert card.position_sentence({**rec, "data": {"paths": paths, "sources": []}}) == ""  # no metadata: nothing to say


def test_operating_sentence_calls_unseen_sources_at_the_models_own_threshold():
    lo = {"id": "z-loso", "held_out": {"a": {"y": [1, 0], "prob": [0.4, 0.2], "source": ["a1", "a1"]}}}
    text = card.operating_sentence("The CNN", {"operating_point": {"threshold": 0.3}}, lo)
    assert text.startswith(" The CNN, answering as the app does") and "run `z-loso`, at threshold 0.30" in text
    assert "right on 100 to 100% of their slices" in text and text.endswith("(per source: a1 100.00%).")
    assert "right on 50 to 50%" in card.operating_sentence("The CNN", {}, lo)  # no operating point: 0.5
    assert card.operating_sentence("The CNN", {}, None) == ""
