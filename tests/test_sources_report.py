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


def test_loso_section_shows_how_much_a_reached_band_answers_on_the_fitting_sources(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    held, idx = {}, 0
    for fam, noise in (("a", 0.05), ("b", 0.1), ("c", 0.15)):
        y = rng.integers(0, 2, 200)
        p = np.clip(np.where(y == 1, 0.9, 0.1) + rng.normal(0, noise, 200), 0, 1)
        acc = float(((p >= 0.5) == y).mean())
        held[fam] = {"idx": list(range(idx, idx + 200)), "y": y.tolist(), "prob": p.tolist(), "source": [fam] * 200,
                     "per_source": {fam: {"n": 200, "accuracy": acc, "sensitivity": acc, "specificity": acc, "auc": 0.99}}}
        idx += 200
    rec = {"id": "run-x", "label": "X", "config": {"model": "patch"}, "command": "python -m bt_core loso ...",
           "wall_time_s": 60, "hardware": {"processor": "x86_64", "cpus": 2, "backend": "tensorflow"},
           "data": {"sources": [], "paths": [f"s/{i}.jpg" for i in range(idx)]}, "held_out": held}
    lines = report.loso_section(rec, tmp_path)
    head = next(i for i, ln in enumerate(lines) if "answered when fitted" in ln)
    rows = [ln.split(" | ") for ln in lines[head + 2:head + 5]]
    assert [r[0] for r in rows] == ["| a", "| b", "| c"]
    for r in rows:
        assert r[2] == "yes" and r[3].endswith("%") and float(r[3][:-1]) >= 10.0
    assert (tmp_path / "risk_coverage_run-x.png").is_file()
    top = next(i for i, ln in enumerate(lines) if "best threshold's accuracy" in ln and ln.startswith("|"))
    for ln in lines[top + 2:top + 5]:  # the best cut does at least as well as 0.5
        cells = ln.split(" | ")
        assert float(cells[7][:-1]) >= float(cells[3][:-1]) > 50.0


def test_size_lines_give_sensitivity_by_tumour_size_per_source():
    rows = {"lgg": [(1, 0.9, "lgg_flair", {"mask_px": "5000"}), (1, 0.2, "lgg_flair", {"mask_px": "5000"}),
                    (1, 0.1, "lgg_flair", {"mask_px": "100"}), (0, 0.9, "lgg_flair", {"mask_px": "0"}),
                    (1, 0.6, "lgg_t1c", {"mask_px": "1500"})],
            "ixi": [(0, 0.1, "ixi_t1", {"plane": "ax"})]}
    lines = report.size_lines(rows)
    body = [ln for ln in lines if ln.startswith("| lgg")]
    assert body == ["| lgg_flair | 0-300 | 1 | 0.0% |", "| lgg_flair | 3000 or more | 2 | 50.0% |",
                    "| lgg_t1c | 1000-3000 | 1 | 100.0% |"]  # healthy slices and sources without masks are left out
    assert report.size_lines({"ixi": rows["ixi"]}) == []


def test_checks_lines_show_refused_and_accepted_accuracy_per_held_out_source():
    from bt_core.evaluation import fold_checks

    rec = _rec("r", "x", {"ixi": {"ixi_t1": {"accuracy": 0.5}}})
    rec["checks"] = {"quantile": 0.96, "held_out": {"ixi": fold_checks.summarise(
        [0, 0, 0, 0], [0.1, 0.9, 0.9, 0.1], ["ixi_t1"] * 4, [False, True, False, False], None)}}
    row = report.checks_lines(rec)[-1]
    assert row == "| ixi | ixi_t1 | 25.0% | 25.0% | – | 50.0% | 66.7% |"
    assert report.checks_lines(_rec("s", "y", {})) == []


def test_checks_lines_add_a_row_for_a_family_of_several_sources():
    from bt_core.evaluation import fold_checks

    y, prob = [1, 1, 0, 1, 0, 0], [0.9, 0.2, 0.1, 0.8, 0.7, 0.3]
    src = ["lgg_flair"] * 3 + ["lgg_t1c"] * 3
    rec = _rec("r", "x", {"lgg": {"lgg_flair": {"accuracy": 1.0}, "lgg_t1c": {"accuracy": 1 / 3}}})
    rec["checks"] = {"quantile": 0.96, "held_out": {"lgg": fold_checks.summarise(
        y, prob, src, [False, True, False, False, False, True], None)}}
    lines = report.checks_lines(rec)
    assert lines[-3].startswith("| lgg | lgg_flair | 33.3% |") and lines[-2].startswith("| lgg | lgg_t1c | 33.3% |")
    # all six: 2 of 6 refused; accuracy on all (3 + 1) / 6 from the stored per-source figures; of the 4
    # accepted (rows 0, 2, 3, 4), 3 right at 0.5
    assert lines[-1] == "| lgg | all 2 sources | 33.3% | 33.3% | – | 66.7% | 75.0% |"


def test_a_missing_run_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sources.md"
    assert report.main(["--loso", str(tmp_path / "no-such-run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run found at") and "\n" not in err
    assert not out.exists()


def test_contrast_lines_split_sensitivity_by_how_much_the_tumour_stands_out(tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "lgg_t1pre"
    (root / "yes").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:96, :96]
    head = (yy - 48) ** 2 + (xx - 48) ** 2 < 40 ** 2
    lesion = (yy - 40) ** 2 + (xx - 52) ** 2 < 64
    for name, value in (("bright", 220), ("iso", 110)):
        img = np.where(head, 100 + 20 * ((xx // 6) % 2), 0).astype(np.uint8)
        img[lesion] = value
        Image.fromarray(img).save(root / "yes" / f"{name}.png")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(root / "masks" / f"{name}.png")
    rec = {"data": {"sources": [{"name": "lgg_t1pre", "root": str(root)}, {"name": "ixi_t1", "root": str(tmp_path / "ixi")}],
                    "paths": ["lgg_t1pre/yes/bright.png", "lgg_t1pre/yes/iso.png", "ixi_t1/no/x.png"]}}
    lines = report.contrast_lines(rec, [0, 1, 2], [1, 1, 0], [0.9, 0.2, 0.7], ["lgg_t1pre", "lgg_t1pre", "ixi_t1"], "held-out")
    body = [ln for ln in lines if ln.startswith("| lgg")]
    assert body == ["| lgg_t1pre | 0-0.25 | 1 | 50.0% | 0.0% |", "| lgg_t1pre | 1 or more | 1 | 50.0% | 100.0% |"]
    assert report.contrast_lines(rec, [2], [0], [0.7], ["ixi_t1"], "held-out") == []  # no masked source


def test_shipped_section_checks_the_slice_position_shortcut_on_the_test_part(tmp_path):
    """A model that calls every middle-of-volume LGG slice tumour is caught on its own test part too."""
    root = tmp_path / "lgg_flair"
    root.mkdir()
    rows, paths, y, prob = ["file,label,group,slice"], [], [], []
    for k in range(1, 21):  # one patient, 20 slices; tumour in 8-13; the model says tumour for 6-15
        lab = "yes" if 8 <= k <= 13 else "no"
        rows.append(f"{lab}/p_{k}.jpg,{lab},p,{k}")
        paths.append(f"lgg_flair/{lab}/p_{k}.jpg")
        y.append(int(lab == "yes"))
        prob.append(0.9 if 6 <= k <= 15 else 0.1)
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    rec = {"id": "cv-x", "label": "X", "config": {"model": "patch"}, "command": "python -m bt_core cv ...",
           "data": {"sources": [{"name": "lgg_flair", "family": "lgg", "root": str(root)}], "paths": paths},
           "test": {"idx": list(range(20)), "y": y, "prob": prob, "source": ["lgg_flair"] * 20}}
    lines = report.shipped_section(rec)
    found = {tuple(c.strip() for c in ln.strip("|").split("|")[1:4]): ln.split("|")[-2].strip()
             for ln in lines if ln.startswith("| lgg | slice position")}
    # middle half: slices 6-15 (q 0.26-0.74): 4 no-tumour slices all called tumour; edges: all right
    assert found[("slice position, no tumour", "middle half", "4")] == "0.0%"
    assert found[("slice position, no tumour", "top or bottom quarter", "10")] == "100.0%"
    assert any(ln.startswith("Shortcut checks on the test part") for ln in lines)
