"""Process configuration, in layers: each one overrides the one before.

1. defaults shipped in `data/defaults.toml`
2. the TOML file at `paths.config_file()` (`stratus.toml` in the user config dir, or the
   file STRATUS_CONFIG names), when it exists
3. `STRATUS_<KEY>` environment variables (STRATUS_DATABASE_URL, STRATUS_READ_ONLY, ...);
   an empty variable counts as unset
4. command-line flags, passed to `load_config(**flags)`; None means "flag not given"

Every bad value is refused with a `ConfigError` naming where it came from (file and line,
variable or flag) and the rule it broke. These are settings of one process; CloudStack's
settings, shared by every server of a cloud, live in the database (`engine.settings`).
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import StratusError

ENV_PREFIX = "STRATUS_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
_HANDLER_NAME = "stratus-log-file"


class ConfigError(StratusError):
    """A configuration file, variable or flag holds something Stratus cannot use."""


@dataclass(frozen=True)
class Config:
    """The settings of one Stratus process (see `data/defaults.toml` for each one)."""

    database_url: str | None
    log_level: str
    read_only: bool
    refresh_seconds: float
    demo_on_first_start: bool
    # Console key remapping: binding id -> keys ("app.quit" = "ctrl+q", "table.filter" =
    # "slash,f"); the `[keymap]` table of the config file, passed to App.set_keymap.
    keymap: dict[str, str] = field(default_factory=dict)


# --- value checks ----------------------------------------------------------------------
# Each takes the value as found (a TOML value, or the text of a variable or flag) and
# returns it converted, or raises ValueError with the rule it broke.


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
        raise ValueError("must be true or false")
    raise ValueError(f"must be true or false, not {_kind(value)}")


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a number of seconds, not {_kind(value)}")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be 0 (off) or a positive number of seconds")
    return seconds


def _log_level(value: Any) -> str:
    level = _text(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _keymap(value: Any) -> dict[str, str]:
    """A `[keymap]` table, or (variable, flag) `id=keys;id=keys` text."""
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in value.split(";"))):
            binding_id, equals, keys = item.partition("=")
            if not equals:
                raise ValueError(f"entry '{item}' must be <binding id>=<keys>")
            pairs[binding_id.strip()] = keys.strip()
        value = pairs
    if not isinstance(value, dict):
        raise ValueError(f'must be a table of binding id = "keys", not {_kind(value)}')
    keymap = {}
    for binding_id, keys in value.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+", binding_id):
            raise ValueError(f"'{binding_id}' is not a binding id (like app.quit or table.filter)")
        if not isinstance(keys, str) or not keys.strip():
            raise ValueError(f'{binding_id} must name one or more keys, like "ctrl+q" or "f,slash"')
        keymap[binding_id] = ",".join(k.strip() for k in keys.split(",") if k.strip())
    return keymap


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "database_url": _text,
    "log_level": _log_level,
    "read_only": _boolean,
    "refresh_seconds": _seconds,
    "demo_on_first_start": _boolean,
    "keymap": _keymap,
}
assert set(_CHECKS) == {f.name for f in fields(Config)}, "every Config field needs a check"


# --- layers ----------------------------------------------------------------------------


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message ends "(at line L, column C)".
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None


def _apply_table(values: dict[str, Any], table: Mapping[str, Any], where: str) -> None:
    for key, raw in table.items():
        check = _CHECKS.get(key)
        if check is None:
            close = difflib.get_close_matches(key, _CHECKS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{where}: unknown setting '{key}'{hint} "
                f"(known settings: {', '.join(sorted(_CHECKS))})",
                field=key,
            )
        values[key] = _checked(check, key, raw, where)


def _checked(check: Callable[[Any], Any], key: str, raw: Any, where: str) -> Any:
    try:
        return check(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key} = {raw!r} {exc}", field=key) from None


def _defaults() -> dict[str, Any]:
    source = resources.files("data").joinpath("defaults.toml")
    values: dict[str, Any] = dict.fromkeys(_CHECKS)
    _apply_table(values, _read_toml(source.read_text(encoding="utf-8"), str(source)), str(source))
    return values


def _file_layer(values: dict[str, Any], path: Path) -> None:
    where = f"config file {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text (byte {exc.start})") from None
    _apply_table(values, _read_toml(text, where), where)


def _environment_layer(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, check in _CHECKS.items():
        name = ENV_PREFIX + key.upper()
        raw = environ.get(name, "")
        if raw.strip():
            values[key] = _checked(check, key, raw, f"environment variable {name}")


def default_config() -> Config:
    """The shipped defaults alone (what a test or an embedded console starts from)."""
    return Config(**_defaults())


def load_config(**flags: Any) -> Config:
    """Defaults, then the config file, then STRATUS_* variables, then `flags`.

    `flags` are the command-line values by setting name (`database_url="sqlite:///..."`,
    `read_only=True`); a None value is a flag that was not given.
    """
    unknown = sorted(set(flags) - set(_CHECKS))
    if unknown:
        raise TypeError(f"load_config() got unknown settings: {', '.join(unknown)}")
    values = _defaults()
    _file_layer(values, paths.config_file())
    _environment_layer(values, os.environ)
    for key, raw in flags.items():
        if raw is not None:
            values[key] = _checked(_CHECKS[key], key, raw, "command line")
    return Config(**values)


# --- logging ---------------------------------------------------------------------------


def setup_logging(config: Config) -> Path:
    """Send this process's logging to the rotating log file; returns its path.

    Nothing goes to the terminal (a full-screen console owns it): the root logger gets
    the file handler, and Python warnings are routed into logging too. Calling it again
    replaces the handler (a test, or a new STRATUS_HOME), never stacks a second one.
    """
    path = paths.log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}: {exc.strerror or exc}") from None
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(config.log_level)
    # Alembic announces each of its plugins at INFO on every start.
    logging.getLogger("alembic.runtime.plugins").setLevel(
        logging.DEBUG if config.log_level == "DEBUG" else logging.WARNING
    )
    logging.captureWarnings(True)
    return path
