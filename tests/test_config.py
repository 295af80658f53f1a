"""Process configuration: defaults, config file, STRATUS_* variables, flags; the log file."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator
from dataclasses import fields
from importlib import resources
from pathlib import Path

import pytest

from engine import paths
from engine.config import Config, ConfigError, default_config, load_config, setup_logging
from engine.errors import StratusError


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("STRATUS_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("STRATUS_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)


def write_config(text: str) -> Path:
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_defaults() -> None:
    config = load_config()
    assert config == Config(
        database_url=None,
        log_level="INFO",
        read_only=False,
        refresh_seconds=2.0,
        demo_on_first_start=True,
    )
    assert default_config() == config


def test_defaults_file_documents_every_setting() -> None:
    text = resources.files("data").joinpath("defaults.toml").read_text()
    present = set(tomllib.loads(text))
    for field in fields(Config):
        assert field.name in present or f"# {field.name} =" in text, field.name


def test_each_layer_overrides_the_one_before(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        'database_url = "sqlite:////srv/file.db"\nlog_level = "debug"\nrefresh_seconds = 5\n'
    )
    config = load_config()
    assert config.database_url == "sqlite:////srv/file.db"
    assert config.log_level == "DEBUG"
    assert config.refresh_seconds == 5.0
    assert config.read_only is False  # untouched: the default

    monkeypatch.setenv("STRATUS_DATABASE_URL", "sqlite:////srv/env.db")
    monkeypatch.setenv("STRATUS_READ_ONLY", "yes")
    monkeypatch.setenv("STRATUS_LOG_LEVEL", "")  # empty: unset
    config = load_config()
    assert config.database_url == "sqlite:////srv/env.db"
    assert config.read_only is True
    assert config.log_level == "DEBUG"

    config = load_config(database_url="sqlite:////srv/flag.db", read_only=None)
    assert config.database_url == "sqlite:////srv/flag.db"
    assert config.read_only is True  # a flag that was not given changes nothing


def test_stratus_config_names_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("demo_on_first_start = false\n")
    monkeypatch.setenv("STRATUS_CONFIG", str(other))
    assert load_config().demo_on_first_start is False


def test_bad_toml_names_the_file_and_line() -> None:
    path = write_config('log_level = "INFO"\n\nread_only = tru\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert isinstance(info.value, StratusError)
    assert str(path) in info.value.message
    assert "line 3" in info.value.message


def test_unknown_key_is_named_with_a_suggestion() -> None:
    path = write_config('databse_url = "sqlite:////x.db"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    message = info.value.message
    assert str(path) in message
    assert "unknown setting 'databse_url'" in message
    assert "did you mean 'database_url'" in message
    assert info.value.field == "databse_url"


def test_unknown_table_is_refused() -> None:
    write_config('[console]\ntheme = "nord"\n')
    with pytest.raises(ConfigError, match="unknown setting 'console'"):
        load_config()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('read_only = "maybe"', "read_only = 'maybe' must be true or false"),
        ("refresh_seconds = -1", "refresh_seconds = -1 must be 0 (off)"),
        ("refresh_seconds = true", "must be a number of seconds, not a boolean"),
        ('log_level = "LOUD"', "must be one of DEBUG, INFO"),
        ("database_url = 5", "must be a string, not a number"),
        ('database_url = ""', "must not be empty"),
    ],
)
def test_bad_values_in_the_file(text: str, fragment: str) -> None:
    path = write_config(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(path) in info.value.message
    assert fragment in info.value.message


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_REFRESH_SECONDS", "soon")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "environment variable STRATUS_REFRESH_SECONDS" in info.value.message


def test_unreadable_config_is_a_config_error() -> None:
    path = paths.config_file()
    path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config()


def test_not_utf8_config_is_a_config_error() -> None:
    path = paths.config_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b'log_level = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config()


def test_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        load_config(colour="blue")


def test_logging_goes_to_the_file_only(capfd: pytest.CaptureFixture[str], home: Path) -> None:
    path = setup_logging(load_config(log_level="WARNING"))
    assert path == home / "state" / "stratus.log"
    logging.getLogger("stratus.test").warning("disk %s is full", "sda")
    logging.getLogger("stratus.test").info("below the level")
    # Calling it again replaces the handler instead of adding a second one.
    setup_logging(load_config())
    logging.getLogger("stratus.test").info("now at INFO")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    assert text.count("disk sda is full") == 1
    assert "below the level" not in text
    assert text.count("now at INFO") == 1
    out, err = capfd.readouterr()
    assert "disk sda" not in out + err and "now at INFO" not in out + err


def test_unwritable_log_dir_is_a_config_error(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "state").write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write the log file"):
        setup_logging(default_config())
