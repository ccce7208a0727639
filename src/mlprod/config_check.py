"""A pydantic-free check that ``mlprod.toml`` certainly validates, for read commands' fast path.

Importing pydantic and building the ``Config`` models costs about a quarter of a second, more than
a listing command needs: it wants the database URL and the artifact store's path. ``plain_paths``
gives them when the raw TOML passes ``SCHEMA`` (every section, key, type and bound of
``mlprod.config``; a test derives the same table from the pydantic models) and no ``MLPROD_*``
override is set. The check errs only towards None: anything it is unsure of (an override, a value of
a type pydantic might coerce) sends the caller to ``load_config``, whose errors stay the only ones.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_FILENAME = "mlprod.toml"
# kind, then bounds ("ge", "gt", "le", "lt") and "pattern"; kinds: str, int, float, bool, list[str],
# "sets" (named evaluation sets, each checked against SET), "tables" (named tables of anything).
Field = tuple[str, dict[str, Any]]
_S: Field = ("str", {})


def _f(kind: str, **rules: Any) -> Field:
    return (kind, rules)


SCHEMA: dict[str, dict[str, Field]] = {
    "workspace": {"name": _S},
    "database": {"url": _S},
    "artifacts": {"path": _S},
    "serve": {
        "host": _S, "port": _f("int", ge=0, le=65535), "max_body_bytes": _f("int", gt=0),
        "auth": _f("str", pattern="^(auto|always|never)$"), "allowed_hosts": _S,
        "model_format": _f("str", pattern="^(auto|native|onnx)$"), "memory_budget_mb": _f("int", gt=0),
        "refresh_seconds": _f("float", gt=0), "micro_batch_max_wait_ms": _f("float", ge=0),
        "micro_batch_max_rows": _f("int", gt=0), "max_rows_per_request": _f("int", gt=0),
        "json_logs": _f("bool"),
    },
    "prediction_log": {
        "path": _S, "flush_interval_seconds": _f("float", gt=0), "max_buffered_rows": _f("int", gt=0),
        "write_ahead": _f("bool"), "fsync": _f("str", pattern="^(never|always)$"),
    },
    "features": {
        "module": _S, "online_store": _f("str", pattern="^(sqlite|redis)$"), "sqlite_path": _S,
        "redis_url": _S,
    },
    "evaluate": {
        "cpu_hour_price": _f("float", ge=0), "seed": _f("int"), "resamples": _f("int", ge=20),
        "profile": _S, "sets": _f("sets"), "profiles": _f("tables"),
    },
    "monitor": {
        "window": _f("str", pattern="^(hour|day|week|month|quarter|year|[1-9][0-9]*|rows:[1-9][0-9]*)$"),
        "bins": _f("int", ge=2, le=1000), "max_categories": _f("int", ge=1),
        "reference_sample_rows": _f("int", ge=100), "psi": _f("float", gt=0),
        "ks": _f("float", gt=0, le=1), "wasserstein": _f("float", gt=0),
        "jensen_shannon": _f("float", gt=0, le=1), "chi2_p_value": _f("float", gt=0, lt=1),
        "drift_alpha": _f("float", gt=0, lt=1), "drift_share": _f("float", gt=0, le=1),
        "missing_rate_increase": _f("float", ge=0, le=1), "out_of_range_rate": _f("float", ge=0, le=1),
        "unseen_rate": _f("float", ge=0, le=1), "accuracy_drop": _f("float", ge=0, le=1),
        "webhook_url": _f("str", pattern=r"^(https?://[^\s/]+\S*)?$"),
    },
}  # fmt: skip
# top-level sections that are named tables of anything (``[loop.NAME]``: checked by mlprod.loop)
NAMED_TABLES = frozenset({"loop"})
SET: dict[str, Field] = {
    "table": _S, "ref": _S, "time": _S, "start": _S, "end": _S,
    "period": _f("str", pattern="^(day|week|month)$"), "slices": _f("list[str]"),
    "fairness": _f("list[str]"), "description": _S, "commit": _S,
}  # fmt: skip
SET_REQUIRED = frozenset({"table", "time"})
# MLPROD_* variables that override nothing (mlprod.config.OTHER_VARIABLES, TEST_VARIABLE_PREFIX)
_NOT_OVERRIDES = frozenset({"MLPROD_HOME", "MLPROD_DEBUG"})
_TEST_PREFIX = "MLPROD_TEST_"


def plain_paths(path: Path, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``(database url, artifacts path)`` of the config at ``path`` when it certainly validates and no
    ``MLPROD_*`` override applies; None when ``mlprod.config.load_config`` must decide."""
    if any(
        name.startswith("MLPROD_") and name not in _NOT_OVERRIDES and not name.startswith(_TEST_PREFIX)
        for name in environ
    ):
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not _valid_sections(raw):
        return None
    return raw.get("database", {}).get("url", ""), raw.get("artifacts", {}).get("path", "artifacts")


def _valid_sections(raw: dict[str, Any]) -> bool:
    for name, section in raw.items():
        if name in NAMED_TABLES:
            if not _valid(("tables", {}), section):
                return False
            continue
        fields = SCHEMA.get(name)
        if fields is None or not isinstance(section, dict):
            return False
        if not all(key in fields and _valid(fields[key], value) for key, value in section.items()):
            return False
    return True


def _valid(field: Field, value: Any) -> bool:
    kind, rules = field
    if kind == "sets":
        return isinstance(value, dict) and all(_valid_set(one) for one in value.values())
    if kind == "tables":
        return isinstance(value, dict) and all(isinstance(one, dict) for one in value.values())
    if kind == "list[str]":
        return isinstance(value, list) and all(type(item) is str for item in value)
    if kind == "float":
        ok = type(value) in (int, float) and value == value  # NaN: let pydantic judge
    else:
        ok = type(value) is {"str": str, "int": int, "bool": bool}[kind]
    return ok and _within(value, rules)


def _within(value: Any, rules: dict[str, Any]) -> bool:
    return all(_holds(value, rule, bound) for rule, bound in rules.items())


def _holds(value: Any, rule: str, bound: Any) -> bool:
    if rule == "pattern":
        return re.search(bound, value) is not None
    return bool({"ge": value >= bound, "gt": value > bound, "le": value <= bound, "lt": value < bound}[rule])


def _valid_set(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() >= SET_REQUIRED
        and all(key in SET and _valid(SET[key], one) for key, one in value.items())
    )


__all__ = ["CONFIG_FILENAME", "NAMED_TABLES", "SCHEMA", "SET", "SET_REQUIRED", "plain_paths"]
