"""Command line: ``python -m bt_core {train,cv,loso,evaluate,predict,audit,reproduce,runs,...}``.

Every user error (bad file, wrong folder, bad option, missing model) ends with one line on stderr
and exit status 2, never a traceback. ``--json`` on ``evaluate`` and ``predict`` prints one JSON
object on stdout. Defaults follow the paper (30 epochs, batch 32, Adam 1e-4, 3 folds) with the
leak-free group-aware split.

Layout: :mod:`bt_core.cli.parser` (every subcommand and option), :mod:`bt_core.cli.commands_train`
(``train``, ``cv``, ``loso``, ``sweep``), :mod:`bt_core.cli.commands_score` (``evaluate``, ``predict``,
``audit``, ``runs``); :func:`main` here runs one command and turns errors into one line. Nothing outside
the command line imports this package.
"""
from __future__ import annotations

import json
import sys

from bt_core.cli.commands_score import cmd_audit, cmd_evaluate, cmd_predict, cmd_runs, default_run  # noqa: F401
from bt_core.cli.commands_train import _config, cmd_loso, cmd_sweep, cmd_train, load_training_data  # noqa: F401
from bt_core.cli.parser import _train_args, build_parser  # noqa: F401
from bt_core.errors import BTError
from bt_core.progress import progress_printer as _progress_printer  # noqa: F401


def main(argv=None) -> int:
    import signal

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the run, so its command can be rerun
    # a cancelled job unwinds normally, so atomic writes remove their temporary files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.command in ("train", "cv", "loso", "reproduce", "calibrate", "loso-checks"):
            from bt_core.quiet import import_keras
            import_keras()  # these need Keras: import it now, without the backend's start-up notices
        if args.command in ("train", "cv"):
            return cmd_train(args, args.command)
        if args.command == "loso":
            return cmd_loso(args)
        if args.command == "reproduce":
            from bt_core.evaluation.reproduce import main as reproduce_main
            return reproduce_main(args)
        if args.command == "calibrate":
            from bt_core.evaluation.posthoc import calibrate
            out = calibrate(args.run, args.data, args.target_sensitivity, args.ood_quantile,
                            loso_run=args.loso, abstain_target=args.abstain_target)
            from bt_core.serving import lite
            try:  # the fast first answer; without it the app answers with Keras
                out["lite"] = lite.export(args.run)
            except BTError as err:
                print(f"note: no LiteRT export ({err})", file=sys.stderr)
            print(json.dumps(out, default=float, indent=1))
            return 0
        if args.command == "loso-checks":
            from bt_core.evaluation import fold_checks
            checks = fold_checks.check_run(args.run, args.data, args.ood_quantile, _progress_printer(None))
            for fam, c in checks["held_out"].items():
                for name, m in c["per_source"].items():
                    acc = "-" if m["accuracy_accepted"] is None else f"{m['accuracy_accepted']:.4f}"
                    plane = "not fitted" if m["plane"] is None else f"{m['plane']:.4f}"
                    print(f"held out {fam}: {name} (n={m['n']}) refused {m['refused']:.4f} (ood {m['ood']:.4f}, "
                          f"plane {plane}) accuracy on accepted {acc}")
            return 0
        if args.command == "sweep":
            return cmd_sweep(args)
        return {"evaluate": cmd_evaluate, "predict": cmd_predict, "audit": cmd_audit, "runs": cmd_runs}[args.command](args)
    except BTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission denied, ...
        print(f"error: {err}", file=sys.stderr)
        return 2
