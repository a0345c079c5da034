"""`python -m bt_core reproduce` end to end on a tiny generated folder."""
import json

from bt_core.cli import main
from conftest import make_folder


def test_reproduce_writes_report_figures_and_reuses_runs(tmp_path, capsys):
    data = make_folder(tmp_path / "data", n_per_class=15, size=64)
    argv = ["reproduce", "--data", str(data), "--epochs", "1", "--folds", "2", "--models", "compact_cnn", "transfer",
            "--cnn-image-size", "64", "--cnn-lr", "1e-3", "--report", str(tmp_path / "report"),
            "--out", str(tmp_path / "runs")]
    assert main(argv) == 0
    report = (tmp_path / "report" / "reproduction.md").read_text()
    for text in ("The paper's numbers beside ours", "random (leaky)", "group (leak-free)", "Table 1",
                 "paired t-test", "Nadeau-Bengio", "McNemar", "DeLong", "95% CI"):
        assert text in report, text
    # the report's command is the one typed, every option included, so it can be rerun as it stands
    assert f"--report {tmp_path / 'report'} --out {tmp_path / 'runs'}`" in report
    for fig in ("roc_random.png", "roc_group.png", "bars_group.png", "curves_transfer_group.png",
                "curves_compact_cnn_random.png"):
        assert (tmp_path / "report" / fig).stat().st_size > 1000, fig
    summary = json.loads((tmp_path / "report" / "reproduction.json").read_text())
    assert set(summary["results"]) == {"random", "group"} and summary["audit"]["group_leak"] == 0
    assert all(len(r["folds"]) == 2 for split in summary["results"].values() for r in split.values())  # --folds 2
    assert len(list((tmp_path / "runs").iterdir())) == 4
    capsys.readouterr()
    assert main(argv) == 0  # the second time every run is reused, nothing is trained
    assert capsys.readouterr().out.count("== reusing") == 4
