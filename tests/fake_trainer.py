"""A stand-in for ``python -m bt_core cv|train`` in the launcher tests: no TensorFlow, starts in a blink.

Run as ``python tests/fake_trainer.py --behave KIND <the launcher's argv after the program>``. It parses the
argv with the real command's parser (:func:`bt_core.cli.parser.build_parser`) and checks it with the real
:class:`bt_core.config.TrainConfig` rules, so a new option needs no change here and a wrong argv fails as the
real command would (one ``error:`` line, exit status 2); it also checks that the options the launcher always
passes are there. Then it writes the same progress events. KIND: ok (saves a run without a model), sleep
(runs until killed, leaves a half-written progress line), stubborn (also ignores SIGTERM), crash (one
``error:`` line, exit status 2), hang_in_save (stops half-way through ``runs.save_run``, inside its hidden
temporary folder).
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bt_core import runs  # noqa: E402
from bt_core.cli.commands_train import _config  # noqa: E402
from bt_core.cli.parser import build_parser  # noqa: E402
from bt_core.errors import BTError  # noqa: E402
from bt_core.serving import jobspec  # noqa: E402

# what the launcher passes on every job (the rest only when changed from the default)
ALWAYS = ("--model", "--backbone", "--split", "--progress-file", "--out", "--lr", "--preprocess",
          *(f"--{k.replace('_', '-')}" for k in jobspec.ALWAYS))
BEHAVIOURS = ("ok", "sleep", "stubborn", "crash", "hang_in_save")

argv = sys.argv[1:]
behave = "ok"
if argv[:1] == ["--behave"]:
    behave, argv = argv[1], argv[2:]
if behave not in BEHAVIOURS:
    sys.exit(f"error: --behave must be one of {', '.join(BEHAVIOURS)}")
args = build_parser().parse_args(argv)  # exits 2 with a usage line on an option the real command lacks
missing = [opt for opt in ALWAYS if opt not in argv]
if args.command not in ("cv", "train") or missing:
    sys.exit(f"error: the launcher must run cv or train with {', '.join(missing) or 'its options'}")
if not args.data and not args.sources:
    sys.exit("error: give --data FOLDER (repeated) and/or --sources FILE")
args.backbone_weights = "none"  # the stand-in never loads weights: skip the converted-weights check
try:
    _config(args)
except BTError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def report(event: dict) -> None:
    with open(args.progress_file, "a") as fh:
        fh.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")


where = ", ".join([*args.data, *filter(None, [args.sources])])
print(f"fake trainer: {behave} {args.command} on {where}", flush=True)
report({"event": "stage", "stage": "fold 1/2", "fold": 1, "folds": args.folds})
report({"event": "epoch", "stage": "fold 1", "epoch": 1, "epochs": args.epochs, "seconds": 0.1,
        "images_per_s": 123.0, "logs": {"loss": 0.69, "accuracy": 0.5}})
if behave == "crash":
    print("error: class folder missing: /nowhere/yes", file=sys.stderr)
    sys.exit(2)
if behave in ("sleep", "stubborn"):
    if behave == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(args.progress_file, "a") as fh:
        fh.write('{"event": "epoch", "stage": "fol')  # a half-written last line, as when killed mid-write
    print("sleeping", flush=True)
    time.sleep(600)


class HalfSavedModel:
    def save(self, path):
        Path(path).write_bytes(b"half a model")
        print("saving: half-way", flush=True)
        report({"event": "saving"})
        time.sleep(600)


record = {"mode": args.command, "config": {"model": args.model, "split": args.split, "epochs": args.epochs}}
model = HalfSavedModel() if behave == "hang_in_save" else None
folder = runs.save_run(record, model, args.out, run_id=f"{runs.new_run_id(record)}-{os.getpid()}")  # two a second
report({"event": "done", "test": {"accuracy": 1.0}})
report({"event": "saved", "run": str(folder)})
print(f"saved {folder}", flush=True)
