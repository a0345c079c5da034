"""The training page (pages/train.py), headless with streamlit.testing: off by default; when enabled,
the form starts a job (the fake trainer, through launcher.CHILD_PROGRAM), shows its progress, refuses a
second start while it runs, cancels it, and lists past jobs (a failed one with its log). Several data
folders (picked, typed, or in a sources file) become a --data option each, shown before the start; a
bad folder is one error line and starts nothing."""
import os
import shlex
import sys
import time
from pathlib import Path

import pytest
from app_fixtures import open_app
from conftest import make_folder

from bt_core.serving import launcher

FAKE = str(Path(__file__).with_name("fake_trainer.py"))


@pytest.fixture
def env(tmp_path, monkeypatch):
    make_folder(tmp_path / "dataroot" / "tiny", n_per_class=3)
    (tmp_path / "dataroot" / "not_data").mkdir()
    monkeypatch.setenv("BT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("BT_DATA_ROOTS", str(tmp_path / "dataroot"))
    monkeypatch.delenv("BT_ENABLE_TRAINING", raising=False)
    yield tmp_path
    for job in launcher.list_jobs():
        if job["status"] == "running":
            launcher.cancel(job["id"], grace=0.5)


def page(secrets=None):
    return open_app("pages/train.py", secrets=secrets, direct=True, timeout=30)


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "warning", "error", "code", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(map(str, parts)) + "\n" + "\n".join(e.label for e in at.expander)


def test_switched_off_shows_only_how_to_enable(env, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "0")
    at = page()
    assert not at.exception
    assert len(at.info) == 1 and "BT_ENABLE_TRAINING=1" in at.info[0].value and "enable_training" in at.info[0].value
    assert "set by BT_ENABLE_TRAINING" in at.info[0].value
    assert len(at.button) == 0 and len(at.selectbox) == 0 and len(at.number_input) == 0 and len(at.error) == 0


def test_on_for_a_local_server_and_off_on_community_cloud_unless_turned_on(env, monkeypatch):
    monkeypatch.setenv("HOSTNAME", "laptop")
    monkeypatch.setenv("HOME", str(env))
    monkeypatch.delenv("SF_PARTNER", raising=False)
    at = page()
    assert not at.exception and at.button(key="train_start")
    assert any("on for a local server" in c.value for c in at.caption)
    monkeypatch.setenv("HOSTNAME", "streamlit")
    at = page()
    assert len(at.button) == 0 and "Community Cloud" in at.info[0].value
    at = page({"enable_training": True})
    assert not at.exception and at.button(key="train_start")


def test_a_secret_enables_it(env, monkeypatch):
    monkeypatch.setenv("HOSTNAME", "streamlit")  # even on Community Cloud
    at = page({"enable_training": True})
    assert not at.exception and at.button(key="train_start")
    tiny = str((env / "dataroot" / "tiny").resolve())
    assert at.multiselect(key="train_data").options == [tiny] and at.multiselect(key="train_data").value == [tiny]


def test_start_progress_busy_cancel(env, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "sleep"])
    at = page()
    assert not at.exception
    assert "Keras" in texts(at) and "backend" in texts(at)  # which device and backend jobs use
    assert at.radio(key="train_split").options == ["group (leak-free)", "random (the paper's)"]
    assert "leaks" in texts(at)
    at.number_input(key="train_epochs").set_value(2)
    at.selectbox(key="train_model").set_value("paper_cnn")
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert "Started job" in at.success[0].value and "explorer and ROC" in at.success[0].value
    job = launcher.running_job()
    assert job and job["spec"]["model"] == "paper_cnn" and job["spec"]["epochs"] == 2
    t0 = time.monotonic()
    while "sleeping" not in launcher.log_tail(job["id"]) and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    at.run()
    body = texts(at)
    assert f"Running: {job['id']}" in body and "sleeping" in body and "images/s" in str([m.label for m in at.metric])
    assert len(at.progress) == 2  # fold and epoch
    at.button(key="train_start").click().run()  # a second start while one runs
    assert any("already running" in w.value for w in at.warning)
    at.button(key="train_cancel").click().run()
    assert not at.exception
    assert launcher.status(job["id"])["status"] == "cancelled"
    assert any("cancelled" in e.label for e in at.expander) and "Running:" not in texts(at)


def test_a_failed_job_shows_its_log(env, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "crash"])
    job = launcher.start(launcher.JobSpec(data_dir=str(env / "dataroot" / "tiny")))
    t0 = time.monotonic()
    while launcher.status(job.id)["status"] == "running" and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    at = page()
    assert not at.exception
    assert any("failed" in e.label for e in at.expander)
    assert any("class folder missing" in e.value for e in at.error)
    assert any("fake trainer" in c.value for c in at.code)


def test_a_bad_folder_is_refused_in_one_line(env, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setenv("BT_DATA_ROOTS", str(env / "nowhere"))
    at = page()
    assert not at.exception and any("BT_DATA_ROOTS" in w.value for w in at.warning)
    at.button(key="train_start").click().run()
    assert not at.exception and any("data root" in e.value or "BT_DATA_ROOTS" in e.value for e in at.error)
    assert launcher.list_jobs() == [] and os.environ["BT_DATA_ROOTS"].endswith("nowhere")


def test_a_recipe_fills_the_form_with_a_shipped_runs_settings(env, monkeypatch):
    import json

    from bt_core import runs

    cfg = {"model": "transfer", "backbone": "efficientnet_lite0", "epochs": 12, "preprocess": "percentile",
           "pooling": "multiscale", "mirror": True, "lr": 3e-4, "image_size": 224, "seed": 7, "degrade_copies": 2}
    runs.save_run({"mode": "cv", "config": cfg}, None, env / "runs", run_id="shipped-transfer")
    (env / "runs" / "shipped.json").write_text(json.dumps({"transfer": "shipped-transfer"}))
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "sleep"])
    at = page()
    assert at.selectbox(key="train_model").value == "compact_cnn" and at.checkbox(key="train_mirror").value is False
    (name,) = [o for o in at.selectbox(key="train_recipe").options if "shipped-transfer" in o]
    at.selectbox(key="train_recipe").set_value(name).run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="train_model").value == "transfer" and at.selectbox(key="train_pooling").value == "multiscale"
    assert at.checkbox(key="train_mirror").value is True and at.number_input(key="train_epochs").value == 12
    assert at.number_input(key="train_lr").value == pytest.approx(3e-4) and at.number_input(key="train_size").value == 224
    at.button(key="train_start").click().run()
    assert not at.exception and "Started job" in at.success[0].value
    spec = launcher.running_job()["spec"]
    assert (spec["model"], spec["pooling"], spec["mirror"], spec["preprocess"], spec["seed"], spec["degrade_copies"]) == (
        "transfer", "multiscale", True, "percentile", 7, 2)
    at.selectbox(key="train_recipe").set_value(launcher.PAPER_RECIPE).run()
    assert at.selectbox(key="train_model").value == "paper_cnn" and at.checkbox(key="train_mirror").value is False
    assert at.selectbox(key="train_pooling").value == "avg" and at.number_input(key="train_size").value == 240


def test_the_shipped_patch_recipe_fills_the_six_source_options(env, monkeypatch):
    import json

    from bt_core import runs

    cfg = {"model": "patch", "epochs": 8, "lr": 3e-4, "seed": 1, "image_size": 128, "preprocess": "percentile",
           "dropout": 0.3, "dense_units": 128, "views": 1, "balance": "position", "samples_per_epoch": 12000,
           "mask_weight": 2.0, "freeze_backbone": True, "head_depth": 2, "strip_skull": 0.5, "symmetry": True,
           "synth_lesions": 0.25, "lesion_weight": 0.3, "position_strength": 0.5,
           "position_reference": "tumour"}
    runs.save_run({"mode": "cv", "config": cfg}, None, env / "runs", run_id="shipped-patch")
    (env / "runs" / "shipped.json").write_text(json.dumps({"transfer": "shipped-patch"}))
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "sleep"])
    at = page()
    assert any("six-source" in e.label for e in at.expander)
    assert at.number_input(key="train_views").value == 0 and at.checkbox(key="train_freeze").value is False
    (name,) = [o for o in at.selectbox(key="train_recipe").options if "shipped-patch" in o]
    at.selectbox(key="train_recipe").set_value(name).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="train_model").value == "patch" and at.selectbox(key="train_balance").value == "position"
    assert [at.number_input(key=k).value for k in ("train_views", "train_dense", "train_samples", "train_head_depth")] == [
        1, 128, 12000, 2]
    assert at.number_input(key="train_dropout").value == pytest.approx(0.3)
    assert at.number_input(key="train_mask_weight").value == pytest.approx(2.0) and at.checkbox(key="train_freeze").value
    assert at.number_input(key="train_strip").value == pytest.approx(0.5) and at.checkbox(key="train_symmetry").value
    assert at.number_input(key="train_lesions").value == pytest.approx(0.25)
    assert at.number_input(key="train_lesion_weight").value == pytest.approx(0.3)
    assert at.number_input(key="train_position_strength").value == pytest.approx(0.5)
    assert at.selectbox(key="train_position_reference").value == "tumour"
    at.button(key="train_preview").click().run()
    assert not at.exception and not at.error, texts(at)
    command = at.code[0].value
    for part in ("--model patch", "--views 1", "--balance position", "--position-strength 0.5",
                 "--position-reference tumour", "--dense-units 128", "--dropout 0.3",
                 "--samples-per-epoch 12000", "--mask-weight 2.0", "--head-depth 2", "--freeze-backbone",
                 "--strip-skull 0.5", "--synth-lesions 0.25", "--lesion-weight 0.3", "--symmetry"):
        assert part in command, (part, command)
    at.button(key="train_start").click().run()
    assert not at.exception and "Started job" in at.success[0].value
    job = launcher.running_job()
    assert (job["spec"]["views"], job["spec"]["freeze_backbone"]) == (1, True) and "--freeze-backbone" in job["argv"]
    launcher.cancel(job["id"], grace=0.5)
    at.selectbox(key="train_model").set_value("compact_cnn")  # patch options left on a CNN: one error line
    at.button(key="train_preview").click().run()
    (error,) = [e.value for e in at.error]
    assert "apply to the patch model only" in error and "\n" not in error
    at.selectbox(key="train_recipe").set_value(launcher.PAPER_RECIPE).run()
    assert at.number_input(key="train_views").value == 0 and at.selectbox(key="train_balance").value == "none"
    assert at.checkbox(key="train_freeze").value is False and at.number_input(key="train_head_depth").value == 0
    assert at.checkbox(key="train_symmetry").value is False and at.number_input(key="train_strip").value == 0
    assert at.number_input(key="train_lesions").value == 0
    assert at.number_input(key="train_lesion_weight").value == pytest.approx(1.0)
    assert at.number_input(key="train_position_strength").value == pytest.approx(1.0)
    assert at.selectbox(key="train_position_reference").value == "both"


def test_transfer_only_options_on_a_cnn_are_refused_in_one_line(env, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "sleep"])
    at = page()
    at.checkbox(key="train_mirror").check()
    at.button(key="train_start").click().run()
    assert not at.exception and any("transfer model only" in e.value for e in at.error)
    assert launcher.list_jobs() == []


def data_options(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--data"]


@pytest.fixture
def sources(env):
    """Two more labelled sources beside tiny/: healthy/ (no/ only) and tumours/ (yes/ only)."""
    make_folder(env / "dataroot" / "healthy", n_per_class=2, classes=("no",))
    make_folder(env / "dataroot" / "tumours", n_per_class=2, classes=("yes",))
    return {name: str((env / "dataroot" / name).resolve()) for name in ("tiny", "healthy", "tumours")}


def test_two_sources_give_two_data_options_shown_before_the_start(env, sources, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "sleep"])
    at = page()
    assert set(at.multiselect(key="train_data").options) == set(sources.values())  # one class alone is a source
    at.multiselect(key="train_data").set_value([sources["healthy"]])
    at.text_area(key="train_data_other").set_value(f"\n  {sources['tumours']}  \n{sources['healthy']}\n")
    at.button(key="train_preview").click().run()
    assert not at.exception and not at.error, texts(at)
    (command,) = [c.value for c in at.code]
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "bt_core", "cv"] and "--progress-file" not in argv
    assert data_options(argv) == [sources["healthy"], sources["tumours"]]  # picked, then typed; no repeat
    assert launcher.list_jobs() == []  # showing the command starts nothing
    at.button(key="train_start").click().run()
    assert not at.exception and "Started job" in at.success[0].value
    job = launcher.running_job()
    assert data_options(job["argv"]) == [sources["healthy"], sources["tumours"]]
    assert shlex.split(at.code[0].value)[4:] == job["argv"][job["argv"].index("cv") + 1:][:len(argv) - 4]
    assert "healthy, tumours" in texts(at)  # the running job names its sources


def test_a_sources_file_becomes_the_sources_option(env, sources, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    toml = env / "dataroot" / "two.toml"
    toml.write_text('[[source]]\npath = "healthy"\n\n[[source]]\npath = "tumours"\nfamily = "t"\n')
    at = page()
    at.multiselect(key="train_data").set_value([])
    at.text_input(key="train_sources").set_value(str(toml))
    at.button(key="train_preview").click().run()
    assert not at.exception and not at.error, texts(at)
    argv = shlex.split(at.code[0].value)
    assert argv[argv.index("--sources") + 1] == str(toml.resolve()) and data_options(argv) == []


@pytest.mark.parametrize("typed, words", [
    ("nowhere", "data folder not found"),
    ("not_data", "needs the class folders no/ or yes/"),
    ("../outside", "not inside an allowed data root"),
])
def test_a_bad_folder_among_several_is_one_error_line_and_starts_nothing(env, sources, monkeypatch, typed, words):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", "sleep"])
    make_folder(env / "outside", n_per_class=1)
    at = page()
    at.multiselect(key="train_data").set_value([sources["tiny"], sources["healthy"]])
    at.text_area(key="train_data_other").set_value(str(env / "dataroot" / typed))
    at.button(key="train_start").click().run()
    assert not at.exception and not at.code and not at.success
    (error,) = [e.value for e in at.error]
    assert words in error and "\n" not in error
    assert launcher.list_jobs() == []


def test_sources_without_a_class_or_with_a_bad_sources_file_are_refused(env, sources, monkeypatch):
    monkeypatch.setenv("BT_ENABLE_TRAINING", "1")
    (env / "dataroot" / "bad.toml").write_text("[[source]\npath = ")
    cases = [([sources["healthy"]], "", "no source has a yes/ folder"),
             ([], str(env / "dataroot" / "bad.toml"), "not valid TOML"),
             ([], str(env / "elsewhere.toml"), "sources file not found"),
             ([], "", "no data chosen")]
    for picked, file, words in cases:
        at = page()
        at.multiselect(key="train_data").set_value(picked)
        at.text_input(key="train_sources").set_value(file)
        at.button(key="train_preview").click().run()
        assert not at.exception and not at.code
        (error,) = [e.value for e in at.error]
        assert words in error and "\n" not in error, (words, error)
