"""Several labelled sources: loading, metadata groups across sequences, one-class sources, masks,
augmented views, the patch model and the protocol on sources (all on generated images)."""
import csv

import numpy as np
import pytest
from PIL import Image

from bt_core.config import TrainConfig
from bt_core.data import augment, sources, splits
from bt_core.errors import DataError
from bt_core.models import patch, training
from tests.conftest import blob_image, make_folder


def make_source(root, patients=4, per_patient=3, size=64, seed=0, classes=("no", "yes"), masks=False,
                plane=None):
    """A source laid out like ../shared/data: yes/ and/or no/, metadata.csv (group = patient), masks/."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks").mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        for s in range(per_patient):
            for cls in classes:
                name = f"P{p}_{s}.png"
                img = blob_image(rng, size, cls == "yes")
                Image.fromarray(img).save(root / cls / name)
                if masks and cls == "yes":
                    Image.fromarray(((img > 200) * 255).astype(np.uint8)).save(root / "masks" / name)
                rows.append({"file": f"{cls}/{name}", "label": cls, "group": f"P{p}", "slice": s,
                             **({"plane": plane} if plane else {})})
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_family_is_the_name_up_to_the_first_underscore():
    assert sources.family_of("lgg_flair") == sources.family_of("lgg_t1c") == "lgg"
    assert sources.family_of("br35h") == "br35h"


def test_several_sources_load_with_groups_across_sequences_and_one_class_sources(tmp_path):
    a = make_source(tmp_path / "lgg_flair", seed=1, masks=True)
    b = make_source(tmp_path / "lgg_t1c", seed=2, masks=True)
    healthy = make_source(tmp_path / "ixi_t1", seed=3, classes=("no",), plane="ax")
    plain = make_folder(tmp_path / "br35h", n_per_class=5)
    ds = sources.load_sources([str(a), str(b), str(healthy), str(plain)], size=64)
    assert ds.source_names == ["lgg_flair", "lgg_t1c", "ixi_t1", "br35h"]
    assert ds.families == ["lgg", "lgg", "ixi", "br35h"]
    assert len(ds) == 24 + 24 + 12 + 10
    assert set(ds.labels[ds.source == 2]) == {0}  # the healthy-only source is kept
    assert ds.paths[0].startswith("lgg_flair/")
    # the same patient in two sequences is one group; different families never share a group
    g = ds.groups
    assert g[ds.source == 0][0] == g[ds.source == 1][0] == "lgg:P0"
    assert not set(g[ds.source == 2]) & set(g[ds.source == 0])
    assert ds.meta["plane"][ds.paths.index("ixi_t1/no/P0_0.png")] == "ax"
    # a group-aware split never puts one patient's FLAIR slice in training and its T1 slice in test
    gid = sources.group_ids(ds)
    tr, te = splits.holdout(training.strata_for(ds), "group", gid, 0.25, 0)
    assert not set(gid[tr]) & set(gid[te])
    assert {ds.source_names[s] for s in ds.source[te]} >= {"lgg_flair", "lgg_t1c"}


def test_masks_are_read_for_yes_slices_and_empty_for_no_slices(tmp_path):
    a = make_source(tmp_path / "lgg_flair", masks=True)
    plain = make_folder(tmp_path / "br35h", n_per_class=3)
    specs = sources.specs_from([str(a), str(plain)])
    ds = sources.load_sources(specs, size=64)
    masks, has = sources.load_masks(ds, specs, size=16)
    lgg_yes = (ds.source == 0) & (ds.labels == 1)
    assert has[ds.source == 0].all() and not has[ds.source == 1].any()  # Br35H has no masks
    assert masks[lgg_yes].max() > 0 and masks[(ds.source == 0) & (ds.labels == 0)].max() == 0


def test_bad_sources_give_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no data"):
        sources.specs_from([])
    a = make_source(tmp_path / "x" / "lgg", patients=1)
    b = make_source(tmp_path / "y" / "lgg", patients=1)
    with pytest.raises(DataError, match="share a name"):
        sources.specs_from([str(a), str(b)])
    bad = tmp_path / "s.toml"
    bad.write_text("[[source]\npath=")
    with pytest.raises(DataError, match="TOML"):
        sources.read_sources_file(bad)
    good = tmp_path / "ok.toml"
    good.write_text('[[source]]\npath = "x/lgg"\nname = "lgg_a"\nfamily = "lgg"\n')
    assert sources.specs_from([], str(good))[0].name == "lgg_a"


def test_views_keep_image_and_mask_geometry_together_and_are_seeded():
    img = np.zeros((32, 32), np.uint8)
    img[2:8, 20:30] = 255
    mask = (img > 0).astype(np.uint8) * 255
    v1, m1, src = augment.views(img[None], 6, seed=3, masks=mask[None])
    v2, _, _ = augment.views(img[None], 6, seed=3, masks=mask[None])
    assert np.array_equal(v1, v2) and list(src) == [0] * 6
    for v, m in zip(v1, m1):  # the bright patch and the mask move together (90-degree turns, flips, crops)
        if m.max() > 0:
            assert v[m > 127].mean() > v[m == 0].mean()


def test_patch_model_outputs_a_probability_and_a_cell_map():
    model = patch.build(weights=None, image_size=64, seed=0)
    out = model.predict(np.zeros((2, 64, 64, 1), np.float32), verbose=0)
    assert out["prob"].shape == (2, 1) and out["patch_logit"].shape == (2, 4, 4, 1)
    lower, upper = patch.split(model)
    again = upper.predict(lower.predict(np.zeros((2, 64, 64, 1), np.float32), verbose=0), verbose=0)
    np.testing.assert_allclose(again["prob"], out["prob"], atol=1e-5)
    assert patch.answer_model(model).output.shape[-1] == 1


def test_protocol_on_several_sources_records_sources_and_trains_the_patch_model(tmp_path):
    a = make_source(tmp_path / "lgg_flair", patients=5, seed=1, masks=True)
    b = make_source(tmp_path / "ixi_t1", patients=5, seed=2, classes=("no",))
    specs = sources.specs_from([str(a), str(b)])
    ds = sources.load_sources(specs, size=64)
    masks = sources.load_masks(ds, specs)
    cfg = TrainConfig(model="patch", backbone_weights=None, epochs=2, batch_size=8, lr=1e-3, image_size=64,
                      folds=2, test_size=0.25, views=1, balance="position", dropout=0.0)
    model, record = training.run_protocol(cfg, ds, "cv", masks=masks)
    assert {s["name"] for s in record["data"]["sources"]} == {"lgg_flair", "ixi_t1"}
    assert len(record["test"]["source"]) == len(record["test"]["y"])
    assert set(record["test"]["per_source"]) <= {"lgg_flair", "ixi_t1"}
    assert len(record["oof"]["source"]) == len(record["oof"]["idx"])
    test = np.asarray(record["test"]["idx"])
    gid = sources.group_ids(ds)
    assert not set(gid[test]) & set(gid[np.asarray(record["split"]["train_idx"])])
    assert model.output.shape[-1] == 1  # the saved model answers with one probability
    assert len(record["final"]["history"]["loss"]) == 2


def test_loso_command_holds_out_each_family_and_saves_a_record(tmp_path, capsys):
    import json

    from bt_core.cli import main

    a = make_source(tmp_path / "lgg_flair", patients=3, seed=1)
    b = make_source(tmp_path / "lgg_t1c", patients=3, seed=2)
    c = make_source(tmp_path / "br35h", patients=3, seed=3)
    out = tmp_path / "runs"
    rc = main(["loso", "--data", str(a), "--data", str(b), "--data", str(c), "--model", "compact_cnn", "--epochs", "1",
               "--image-size", "32", "--head-pool", "2", "--batch-size", "8", "--views", "1", "--balance", "source", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "held out lgg: lgg_flair" in printed and "held out br35h: br35h" in printed
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    rec = json.loads((run / "run.json").read_text())
    assert set(rec["held_out"]) == {"lgg", "br35h"}
    lgg = rec["held_out"]["lgg"]
    assert set(lgg["source"]) == {"lgg_flair", "lgg_t1c"} and set(lgg["trained_on"]) == {"br35h"}
    assert main(["loso", "--data", str(a), "--data", str(b), "--out", str(out)]) == 2  # one family only
    assert "at least two source families" in capsys.readouterr().err


def test_calibrated_patch_run_names_the_plane_and_abstains_with_a_reason(tmp_path, monkeypatch):
    """cv + loso + calibrate on generated sources: the run gets a plane detector and an abstention band,
    and the Predictor says which plane it sees and why it refuses."""
    from bt_core import runs
    from bt_core.cli import main
    from bt_core.serving import inference

    lgg = make_source(tmp_path / "lgg_flair", patients=4, seed=1, masks=True)
    ixi = tmp_path / "ixi_t1"
    make_source(ixi, patients=4, seed=2, classes=("no",), plane="ax")
    # half of IXI's subjects seen in another plane (the images are the same kind; the labels are what matter)
    rows = (ixi / "metadata.csv").read_text().splitlines()
    (ixi / "metadata.csv").write_text("\n".join([rows[0]] + [r.replace(",ax", ",cor") if "P1_" in r or "P3_" in r
                                                            else r for r in rows[1:]]) + "\n")
    br = make_source(tmp_path / "br35h", patients=4, seed=3)
    out = tmp_path / "runs"
    common = ["--data", str(lgg), "--data", str(ixi), "--data", str(br), "--model", "patch", "--image-size", "32",
              "--epochs", "1", "--batch-size", "8", "--folds", "2", "--freeze-backbone", "--backbone-weights", "none",
              "--dense-units", "8", "--head-depth", "1", "--out", str(out)]
    assert main(["cv", *common]) == 0
    assert main(["loso", *common]) == 0
    cv_run, loso_run = sorted((p for p in out.iterdir() if p.is_dir()), key=lambda p: p.name.endswith("loso"))
    assert main(["calibrate", str(cv_run), "--loso", str(loso_run), "--abstain-target", "0.99"]) == 0
    # the refusal checks fitted per held-out family: every held-out image gets a flag, in the record's order
    assert main(["loso-checks", str(loso_run)]) == 0
    checks = runs.load_run(loso_run)["checks"]["held_out"]
    lo = runs.load_run(loso_run)["held_out"]
    assert set(checks) == set(lo) and all(len(checks[f]["ood_flags"]) == len(lo[f]["y"]) for f in lo)
    assert checks["ixi"]["plane_flags"] is None  # without IXI every fitting image is axial: no plane detector
    assert checks["lgg"]["plane_flags"] is not None and checks["lgg"]["per_source"]["lgg_flair"]["plane"] is not None
    assert main(["loso-checks", str(cv_run)]) == 2  # a cv run: one line, no traceback
    rec = runs.load_run(cv_run)
    assert rec["plane"]["classes"] == ["ax", "cor"] and "low" in rec["abstain"]
    pred = inference.Predictor(cv_run, background=False)
    imgs = [blob_image(np.random.default_rng(i), 64, bool(i % 2)) for i in range(6)]
    answers = pred.answer(imgs)
    assert all(a.plane in ("axial", "coronal") for a in answers)
    for a in answers:  # every refusal says why; every answer is outside the band
        if a.ood:
            assert a.reason and a.decision.startswith(("no answer", "unlike"))
        else:
            assert not rec["abstain"]["low"] < a.prob < rec["abstain"]["high"]
    # a band covering everything refuses everything, with the uncertainty reason (unless another check refused)
    pred.record["abstain"] = {"low": 0.0, "high": 1.0}
    assert all(a.ood for a in pred.answer(imgs))
    assert any(a.reason == inference.REASON_UNCERTAIN or a.reason.startswith("a coronal") for a in pred.answer(imgs))


def test_balanced_draws_hold_for_a_training_set_smaller_than_an_epoch():
    from bt_core.models.sampling import balance_weights, draw_rows

    keys = np.array(["a|0"] * 90 + ["b|0"] * 10)
    rows, w = np.arange(100), balance_weights(keys)
    for n in (0, 100, 400):  # as many rows as there are, or more: every row once would ignore the weights
        r = draw_rows(rows, w, n, np.random.default_rng(0))
        assert len(r) == (n or 100) and 0.35 < (keys[r] == "b|0").mean() < 0.65
    r = draw_rows(rows, w, 40, np.random.default_rng(0))  # fewer: without replacement, as before
    assert len(set(r.tolist())) == 40 and 0.15 < (keys[r] == "b|0").mean()
    plain = draw_rows(rows, np.ones(100), 0, np.random.default_rng(0))
    assert (plain == rows).all()  # unweighted: every row once


def test_fold_refusals_fit_without_the_held_out_family_and_flag_what_is_unlike_the_others():
    """Family C's features lie far from A's and B's: fitted without C, the check flags C; A and B, each
    like the rest, are mostly kept. Plane: fitted only where the other families hold two planes."""
    from bt_core.evaluation import fold_checks

    rng = np.random.default_rng(0)
    fam = np.repeat(["a", "b", "c"], 60)
    y = np.tile([0, 1], 90)
    feats = rng.normal(size=(180, 6)) + y[:, None]
    feats[fam == "c", :5] += 25.0
    stats = rng.normal(size=(180, 4))
    planes = np.where((fam == "b") & (np.arange(180) % 4 == 0), "cor", "ax")
    feats[planes == "cor", 5] -= 20.0  # a coronal slice looks unlike an axial one
    groups = np.arange(180) // 2
    out = fold_checks.fold_refusals(fam, y, groups, fam.astype(object) + y.astype(str), feats, stats, planes,
                                    quantile=0.9, folds=3, seed=0)
    assert out["c"]["ood"].mean() == 1.0
    b_cor = planes[fam == "b"] == "cor"  # unlike anything in a or c
    assert out["a"]["ood"].mean() < 0.3 and out["b"]["ood"][~b_cor].mean() < 0.3 and out["b"]["ood"][b_cor].all()
    assert out["b"]["plane"] is None  # without b, every fitting image is axial
    assert out["a"]["plane"] is not None and out["a"]["plane"].mean() < 0.2
    s = fold_checks.summarise(y[:60], np.where(y[:60] == 1, 0.9, 0.1), fam[:60], np.arange(60) < 30, None)
    assert s["all"]["refused"] == 0.5 and s["all"]["accuracy_accepted"] == 1.0 and s["all"]["plane"] is None


def test_slice_positions_run_from_the_lowest_to_the_highest_slice_of_each_patient(tmp_path):
    lgg = make_source(tmp_path / "lgg_flair", patients=2, per_patient=5)
    ds = sources.load_sources([str(lgg), str(make_folder(tmp_path / "br35h", n_per_class=3))], size=32)
    pos = sources.slice_positions(ds)
    at = {p: q for p, q in zip(ds.paths, pos)}
    assert at["lgg_flair/no/P0_0.png"] == 0 and at["lgg_flair/yes/P1_4.png"] == 1
    assert at["lgg_flair/no/P1_2.png"] == pytest.approx(0.5)
    assert np.isnan(pos[ds.source == 1]).all()  # Br35H: no group slices, no position


def test_position_balance_takes_slice_position_out_of_the_label():
    from bt_core.config import TrainConfig
    from bt_core.models.sampling import position_weights, sample_weights

    rng = np.random.default_rng(0)
    pos = rng.uniform(size=4000)
    y = (rng.uniform(size=4000) < np.where((pos > 0.25) & (pos < 0.75), 0.8, 0.1)).astype(int)  # tumours mid-volume
    fam = np.where(np.arange(4000) < 3000, "lgg", "ixi")
    y[fam == "ixi"] = 0  # one class only: left alone
    pos[:10] = np.nan  # unknown position: weight 1
    w = position_weights(fam, y, pos)
    assert np.all(w[fam == "ixi"] == 1) and np.all(w[:10] == 1)
    lgg = (fam == "lgg") & np.isfinite(pos)
    mid = (pos > 0.25) & (pos < 0.75)
    share = {c: w[lgg & (y == c) & mid].sum() / w[lgg & (y == c)].sum() for c in (0, 1)}
    raw = {c: (lgg & (y == c) & mid).sum() / (lgg & (y == c)).sum() for c in (0, 1)}
    assert raw[1] - raw[0] > 0.5  # before: tumour slices crowd the middle
    assert share[0] == pytest.approx(share[1], abs=1e-6)  # after: both classes alike along the volume
    for c in (0, 1):  # each class keeps its total weight
        assert w[lgg & (y == c)].sum() == pytest.approx((lgg & (y == c)).sum())
    # what TrainConfig.balance asks for: "source" evens the (family, class) pairs, "position" that times w
    src = sample_weights(TrainConfig(balance="source"), fam, y)
    pairs = {(f, c): src[(fam == f) & (y == c)].sum() for f, c in {(f, c) for f, c in zip(fam, y)}}
    assert np.allclose(list(pairs.values()), len(y) / len(pairs))
    assert np.allclose(sample_weights(TrainConfig(balance="position"), fam, y, pos), src * w)
    assert np.all(sample_weights(TrainConfig(balance="none"), fam, y) == 1)
    # half strength: part of the way (the middle-half shares closer, not equal), each class's total kept
    half = position_weights(fam, y, pos, strength=0.5)
    share_half = {c: half[lgg & (y == c) & mid].sum() / half[lgg & (y == c)].sum() for c in (0, 1)}
    assert 0 < share_half[1] - share_half[0] < raw[1] - raw[0]
    assert half[lgg].max() < w[lgg].max() and np.all(half[fam == "ixi"] == 1)
    for c in (0, 1):
        assert half[lgg & (y == c)].sum() == pytest.approx((lgg & (y == c)).sum())
    assert np.allclose(sample_weights(TrainConfig(balance="position", position_strength=0.5), fam, y, pos), src * half)
    # the tumour slices as reference: they stay at 1, the no-tumour slices take their position shares
    tum = position_weights(fam, y, pos, reference="tumour")
    share_tum = {c: tum[lgg & (y == c) & mid].sum() / tum[lgg & (y == c)].sum() for c in (0, 1)}
    assert np.all(tum[lgg & (y == 1)] == 1) and share_tum[0] == pytest.approx(raw[1], abs=1e-6)
    assert tum[lgg & (y == 0)].sum() == pytest.approx((lgg & (y == 0)).sum())
    assert np.allclose(sample_weights(TrainConfig(balance="position", position_reference="tumour"), fam, y, pos), src * tum)


def test_middle_reference_evens_the_middle_half_and_leaves_the_edge_quarters_alone():
    from bt_core.models.sampling import position_weights

    # per position quarter: no-tumour 40/20/20/40 slices, tumour 2/10/30/2 (crowding the third quarter)
    counts = {0: (40, 20, 20, 40), 1: (2, 10, 30, 2)}
    y = np.concatenate([np.full(sum(n), c) for c, n in counts.items()])
    pos = np.concatenate([np.repeat([0.125, 0.375, 0.625, 0.875], n) for n in counts.values()])
    fam = np.full(len(y), "lgg")
    quarter = (pos * 4).astype(int)
    mid, both = position_weights(fam, y, pos, reference="middle"), position_weights(fam, y, pos)
    for c in (0, 1):
        sel = y == c
        assert mid[sel].sum() == pytest.approx(sel.sum())  # each class keeps its total weight
        edge = mid[sel & ((quarter == 0) | (quarter == 3))]
        assert np.ptp(edge) == 0  # the edge quarters: one weight, the class's scale, not moved along the volume
    # the middle half: both classes split it alike between its two quarters (unlike before: 1:1 against 1:3)
    split = [mid[(y == c) & (quarter == 1)].sum() / mid[(y == c) & (quarter == 2)].sum() for c in (0, 1)]
    assert split[0] == pytest.approx(split[1]) and split[0] != pytest.approx(1.0)
    # the rare edge tumour slices are not weighted up as the full balance does
    edge_tumour = (y == 1) & (quarter == 0)
    assert mid[edge_tumour].max() < 1.5 < both[edge_tumour].max()


def test_position_strength_and_reference_need_the_position_balance():
    from bt_core.config import TrainConfig
    from bt_core.errors import ConfigError

    assert TrainConfig(balance="position", position_strength=0.5).validate().position_strength == 0.5
    for bad in (dict(balance="source", position_strength=0.5), dict(balance="position", position_strength=0.0),
                dict(balance="position", position_strength=1.5)):
        with pytest.raises(ConfigError, match="position strength"):
            TrainConfig(**bad).validate()
    for bad in (dict(balance="source", position_reference="tumour"), dict(balance="position", position_reference="x")):
        with pytest.raises(ConfigError, match="position reference"):
            TrainConfig(**bad).validate()
