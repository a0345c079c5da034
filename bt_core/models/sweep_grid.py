"""Sweep grids: a sweep file (TOML) and ``--set`` options read, expanded into configurations with stable ids.

A sweep file is TOML (read with :mod:`tomllib`); option names are the command line's, with ``-`` or ``_``::

    command = "cv"                  # or "train" (default "cv")
    name = "lite0-lr"               # the sweep id (default: "sweep-" + a hash of command, base and grid)
    [base]                          # options every configuration gets
    data = "../shared/data/br35h"   # a list repeats the option: data = ["a", "b"]
    model = "transfer"
    mirror = true                   # a flag: true gives --mirror, false leaves it out
    [grid]                          # every combination of these lists is one configuration
    lr = [1e-4, 3e-4]
    seed = [1, 2]

``--set key=v1,v2`` adds (or replaces) a grid axis; ``--set key=v`` with one value is a base option.
Each configuration has a stable id (a hash of its command and options). Options the sweep sets itself
(``out``, ``progress_file``, ``only_fold``) are refused. Running the grid is :mod:`bt_core.models.sweep`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bt_core import runs
from bt_core.errors import ConfigError

COMMANDS = ("cv", "train")
RESERVED = {"out", "progress_file", "only_fold"}  # the sweep sets where a run goes


@dataclass
class Config:
    """One point of the grid."""

    config_id: str
    options: dict            # every option (base and grid), keys with "_"
    varied: dict             # the grid's options only (what tells this one from the others)
    argv: list = field(default_factory=list)

    def describe(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.varied.items()) or "(base options)"


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def _key(k: str) -> str:
    return str(k).strip().lstrip("-").replace("-", "_")


def parse_value(text: str):
    """A --set value: a TOML literal (1e-4, 3, true, "x") where it is one, else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items: list[str]) -> dict:
    """``["lr=1e-4,3e-4", "seed=1"]`` -> ``{"lr": [0.0001, 0.0003], "seed": [1]}``."""
    out = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--set {item!r}: expected key=value[,value...]")
        out[_key(key)] = [parse_value(v.strip()) for v in values.split(",")]
    return out


def load_spec(path: str | os.PathLike | None, sets: list[str] | None = None) -> dict:
    """The sweep file (optional) with ``--set`` options applied -> ``{"command", "name", "base", "grid"}``."""
    spec = {"command": "cv", "name": None, "base": {}, "grid": {}}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"sweep file {path}: {err.strerror or err}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"sweep file {path} is not valid TOML: {err}") from None
        unknown = set(raw) - {"command", "name", "base", "grid"}
        if unknown:
            raise ConfigError(f"sweep file {path}: unknown keys {sorted(unknown)} (command, name, base, grid)")
        spec.update({k: raw[k] for k in ("command", "name") if k in raw})
        for part in ("base", "grid"):
            if not isinstance(raw.get(part, {}), dict):
                raise ConfigError(f"sweep file {path}: [{part}] must be a table")
            spec[part] = {_key(k): v for k, v in raw.get(part, {}).items()}
    for key, values in parse_set(sets).items():
        spec["base"].pop(key, None)
        spec["grid"].pop(key, None)
        if len(values) == 1:
            spec["base"][key] = values[0]
        else:
            spec["grid"][key] = values
    return spec


def _digest(obj, n: int) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def to_argv(options: dict) -> list[str]:
    """Options -> command-line arguments (True: a flag, False/None: left out, a list: the option repeated)."""
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def expand(spec: dict, known: set[str] | None = None) -> tuple[str, list[Config]]:
    """-> (sweep id, configurations in grid order). ``known``: valid option names (``_`` form)."""
    command, base, grid = spec["command"], spec["base"], spec["grid"]
    if command not in COMMANDS:
        raise ConfigError(f"sweep command must be one of {', '.join(COMMANDS)}, not {command!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid option {key!r} must be a non-empty list of values")
    for key in set(base) | set(grid):
        if key in RESERVED:
            raise ConfigError(f"option {key!r} is set by the sweep itself (use --out for the registry)")
        if known is not None and key not in known:
            raise ConfigError(f"unknown option {key!r} for `python -m bt_core {command}`")
    if not base.get("data") and "data" not in grid and not base.get("sources") and "sources" not in grid:
        raise ConfigError("a sweep needs data: put data = \"DIR\" in [base] or give --set data=DIR")
    name = spec.get("name") or "sweep-" + _digest({"command": command, "base": base, "grid": grid}, 8)
    if not runs._ID_OK.match(str(name)):
        raise ConfigError(f"invalid sweep name {name!r} (letters, digits, . _ -)")
    configs, seen = [], set()
    for point in itertools.product(*grid.values()):
        varied = dict(zip(grid, point))
        options = {**base, **varied}
        cid = _digest({"command": command, "options": options}, 10)
        if cid in seen:
            continue
        seen.add(cid)
        configs.append(Config(cid, options, varied, to_argv(options)))
    return str(name), configs
