"""bt_core.evaluation.breakdown: predictions split by slice position, plane, sequence and tumour size."""
import pytest

from bt_core.evaluation import breakdown


def test_position_runs_from_each_patients_first_to_last_slice():
    rows = [(0, 0.1, "lgg_flair", {"group": "a", "slice": "3"}), (1, 0.9, "lgg_flair", {"group": "a", "slice": "13"}),
            (1, 0.9, "lgg_flair", {"group": "a", "slice": "8"}), (0, 0.2, "lgg_flair", {"group": "b", "slice": "1"}),
            (0, 0.2, "lgg_flair", {"group": "b", "slice": "5"}), (0, 0.2, "ixi_t1", {})]
    assert breakdown.position_of(rows) == [0.0, 1.0, 0.5, 0.0, 1.0, None]


def test_shortcut_splits_by_position_plane_and_sequence():
    lgg = [(0, 0.1, "lgg_t1c", {"group": "a", "slice": str(k)}) for k in range(1, 10)]
    lgg[4] = (0, 0.8, "lgg_t1c", {"group": "a", "slice": "5"})  # the middle slice called tumour
    rows = {"lgg": lgg, "ixi": [(0, 0.1, "ixi_t1", {"plane": "ax"}), (0, 0.7, "ixi_t1", {"plane": "sag"})],
            "brats2012": [(1, 0.9, "brats2012_hg0015", {"seq": "T1"})]}
    got = {(r["family"], r["split"], r["part"]): (r["n"], r["accuracy"]) for r in breakdown.shortcut_splits(rows)}
    assert got[("lgg", "slice position, no tumour", breakdown.EDGE)] == (4, 1.0)  # slices 1, 2, 8, 9
    assert got[("lgg", "slice position, no tumour", breakdown.MIDDLE)] == (5, pytest.approx(0.8))
    assert got[("ixi", "plane", "ax")] == (1, 1.0) and got[("ixi", "plane", "sag")] == (1, 0.0)
    assert got[("brats2012", "sequence", "T1")] == (1, 1.0)
    assert breakdown.shortcut_splits(rows, threshold=0.95)[-1]["accuracy"] == 0.0  # the threshold is honoured
