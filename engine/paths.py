"""Where Stratus keeps its files (platformdirs), overridable for tests and packaging.

STRATUS_HOME puts data, config, state and logs under one directory; otherwise the user's
standard directories are used.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "stratus"


def _home() -> Path | None:
    home = os.environ.get("STRATUS_HOME")
    return Path(home).expanduser() if home else None


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP))


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP))


def state_dir() -> Path:
    home = _home()
    return home / "state" if home else Path(platformdirs.user_state_dir(APP))


def config_file() -> Path:
    return Path(os.environ.get("STRATUS_CONFIG") or config_dir() / "stratus.toml")


def log_file() -> Path:
    return state_dir() / "stratus.log"
