"""The data-folder fence: which folders a training job (or the Score page) may read.

Data folders must lie in an allowed root: ``$BT_DATA_ROOTS`` (``os.pathsep``-separated; default
``../shared/data`` beside the repository). A folder is checked after resolving every symlink: no
``..`` or link out of the roots, class folders ``no/`` and ``yes/`` (both, or one for a source that
has a single class), and no image linked to a file outside the roots. A job's several sources
(:func:`check_sources`: folders and/or a TOML sources file, itself inside a root) may each have one
class, but together need both, and distinct names.
"""
import os
from contextlib import suppress
from pathlib import Path

from bt_core.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("no", "yes")


def allowed_roots(env=None) -> list[Path]:
    """The existing data roots, resolved, from ``$BT_DATA_ROOTS`` (default ``../shared/data``)."""
    raw = (os.environ if env is None else env).get("BT_DATA_ROOTS")
    cands = [c for c in raw.split(os.pathsep) if c.strip()] if raw is not None else [REPO.parent / "shared" / "data"]
    return [Path(c).expanduser().resolve() for c in cands if Path(c).expanduser().is_dir()]


def check_data_dir(path, roots=None, both: bool = True) -> Path:
    """The resolved folder; ConfigError if it is outside the allowed roots or lacks the class folders
    (``both=False``: one of them is enough, as for scoring a set of healthy scans)."""
    roots = allowed_roots() if roots is None else [Path(r).resolve() for r in roots]
    inside = lambda p: any(p == r or r in p.parents for r in roots)  # noqa: E731
    if not roots:
        raise ConfigError("no data folder is allowed: the operator must set BT_DATA_ROOTS")
    try:
        real = Path(str(path or "").strip() or "\0").expanduser().resolve(strict=True)  # follows every symlink
    except (OSError, RuntimeError, ValueError):
        raise ConfigError(f"data folder not found: {path or '(none chosen)'}") from None
    if not inside(real) or not real.is_dir():
        raise ConfigError(f"data folder {path} is not inside an allowed data root ({', '.join(map(str, roots))})")
    subs = [real / c for c in CLASSES]
    if not both:
        subs = [sub for sub in subs if sub.is_dir()] or subs[:1]
    for sub in subs:
        if not sub.is_dir() or not inside(sub.resolve()):
            raise ConfigError(f"data folder {path} needs the class folders {CLASSES[0]}/ "
                              f"{'and' if both else 'or'} {CLASSES[1]}/")
        with suppress(OSError):  # an unreadable folder fails in the job, with its own message
            if any(e.is_symlink() and not inside(Path(e.path).resolve()) for e in os.scandir(sub)):
                raise ConfigError(f"class folder {sub} links to files outside the allowed data roots")
    return real


def _check_file(path, roots: list[Path]) -> Path:
    try:
        real = Path(str(path).strip()).expanduser().resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise ConfigError(f"sources file not found: {path}") from None
    if not real.is_file() or not any(r in real.parents for r in roots):
        raise ConfigError(f"sources file {path} is not a file inside an allowed data root "
                          f"({', '.join(map(str, roots))})")
    return real


def check_sources(folders=(), sources_file="", roots=None) -> tuple[list[Path], Path | None]:
    """A job's labelled sources -> (the resolved folders, without repeats; the resolved sources file or None).

    Each folder, and each one the sources file lists, passes :func:`check_data_dir` with one class
    folder enough; together they hold both classes and no two share a name. ConfigError (one line)
    otherwise, or when nothing is chosen."""
    from bt_core.data import sources  # here, not above: the image decoders load only when a job is checked

    roots = allowed_roots() if roots is None else [Path(r).resolve() for r in roots]
    if not roots:
        raise ConfigError("no data folder is allowed: the operator must set BT_DATA_ROOTS")
    folders = [f for f in folders if str(f or "").strip()]
    if not folders and not str(sources_file or "").strip():
        raise ConfigError("no data chosen: choose a data folder (several for several sources) or a sources file")
    real = list(dict.fromkeys(check_data_dir(f, roots, both=False) for f in folders))
    file, listed = None, []
    try:
        if str(sources_file or "").strip():
            file = _check_file(sources_file, roots)
            listed = [check_data_dir(spec.path, roots, both=False) for spec in sources.read_sources_file(file)]
        sources.specs_from([str(d) for d in real], str(file) if file else None)  # names must be unique
    except DataError as err:
        raise ConfigError(str(err).replace("\n", " ")) from None
    for cls in CLASSES:
        if not any((d / cls).is_dir() for d in (*real, *listed)):
            raise ConfigError(f"no source has a {cls}/ folder: training needs both {CLASSES[0]}/ and "
                              f"{CLASSES[1]}/ images (add a source with {cls}/)")
    return real, file


def find_data_folders(roots, both: bool = True, limit: int = 500) -> list[str]:
    """The roots and their sub-folders, two levels down, that pass :func:`check_data_dir` (resolved,
    in order, without repeats); at most ``limit`` candidates per root are checked."""
    found = []
    for root in map(Path, roots):
        try:
            level1 = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
            cands = [root, *level1, *sorted(e for d in level1 for e in d.iterdir() if e.is_dir())]
        except OSError:
            continue
        for cand in cands[:limit]:
            with suppress(ConfigError):
                found.append(str(check_data_dir(cand, roots, both=both)))
    return list(dict.fromkeys(found))
