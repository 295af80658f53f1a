"""The `stratus` command: every failure is one line on stderr and a non-zero status."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli.main
from cli.main import main
from engine.schema import head_revision

REPO = Path(__file__).resolve().parent.parent
UNKNOWN_REVISION = "ffff0000newer"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private STRATUS_HOME, no STRATUS_* settings from the developer's shell, and the
    root logger as it was (main() points it at the test's log file)."""
    for name in list(os.environ):
        if name.startswith("STRATUS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("STRATUS_HOME", str(home))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield home
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("stratus: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


# --- database URLs -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["demo"], ["db", "upgrade"], ["db", "current"]])
def test_unusable_database_url_is_one_line(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, err = run(capsys, "--db", "nosuch://x", *command)
    assert code == 1
    assert out == ""
    line = one_error_line(err)
    assert "nosuch" in line


def test_in_memory_sqlite_is_refused_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--db", "sqlite:///:memory:", "db", "upgrade")
    assert code == 1
    assert "in-memory SQLite" in one_error_line(err)


def test_db_option_also_works_after_the_command(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    code, out, _ = run(capsys, "db", "upgrade", "--db", db_url)
    assert code == 0
    assert db_url in out


def test_database_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_DATABASE_URL", db_url)
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    assert db_url in out


def test_default_database_lives_in_the_data_dir(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    assert str(home / "data" / "stratus.db") in out
    assert (home / "data" / "stratus.db").exists()


# --- subprocess: nothing escapes the real entry points -----------------------------------


def _entry_points() -> list[list[str]]:
    points = [[sys.executable, "-m", "cli.main"]]
    script = Path(sys.executable).with_name("stratus")
    if script.exists():
        points.append([str(script)])
    return points


@pytest.mark.parametrize("entry", _entry_points(), ids=lambda e: Path(e[-1]).name)
@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--db", "nosuch://x", "db", "current"], 1),
        (["demo", "--hosts", "abc"], 2),
        (["no-such-command"], 2),
    ],
)
def test_subprocess_prints_one_line_and_no_traceback(
    entry: list[str], argv: list[str], status: int, home: Path
) -> None:
    env = {**os.environ, "STRATUS_HOME": str(home)}
    result = subprocess.run(
        [*entry, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    one_error_line(result.stderr)


# --- usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--hosts", "abc"],
        ["demo", "--bogus"],
        ["frobnicate"],
        ["db"],
        ["db", "downgrade"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "--help" in one_error_line(err)


def test_hosts_not_a_number_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "demo", "--hosts", "abc")
    assert one_error_line(err) == (
        "stratus: error: argument --hosts: invalid int value: 'abc' (see 'stratus demo --help')"
    )


@pytest.mark.parametrize(
    "argv",
    [[], ["console"], ["demo"], ["db"], ["db", "upgrade"], ["db", "current"]],
    ids=lambda a: " ".join(a) or "stratus",
)
def test_help_works_for_every_command(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith(f"usage: stratus{' ' if argv else ''}{' '.join(argv)}")
    assert err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("stratus ")


# --- db ----------------------------------------------------------------------------------


def test_db_upgrade_then_current(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    head = head_revision()
    code, out, err = run(capsys, "--db", db_url, "db", "upgrade")
    assert (code, err) == (0, "")
    assert out == f"database {db_url}: schema (empty) → {head}\n"

    code, out, _ = run(capsys, "--db", db_url, "db", "upgrade")
    assert code == 0
    assert out == f"database {db_url}: already at {head}\n"

    code, out, _ = run(capsys, "--db", db_url, "db", "current")
    assert code == 0
    assert f"current: {head}" in out
    assert f"head:    {head}" in out
    assert "up to date" in out


def test_db_current_on_an_empty_database(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, out, _ = run(capsys, "--db", db_url, "db", "current")
    assert code == 0
    assert "current: (none)" in out
    assert "stratus db upgrade" in out


def _stamp_unknown_revision(db_url: str) -> None:
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (UNKNOWN_REVISION,))


def test_db_upgrade_refuses_a_newer_schema(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    assert run(capsys, "--db", db_url, "db", "upgrade")[0] == 0
    _stamp_unknown_revision(db_url)

    code, out, err = run(capsys, "--db", db_url, "db", "upgrade")
    assert code == 1
    assert out == ""
    line = one_error_line(err)
    assert UNKNOWN_REVISION in line and "newer Stratus" in line

    code, out, _ = run(capsys, "--db", db_url, "db", "current")
    assert code == 0
    assert f"current: {UNKNOWN_REVISION}" in out and "newer than this Stratus" in out

    code, _, err = run(capsys, "--db", db_url, "console")
    assert code == 1
    assert UNKNOWN_REVISION in one_error_line(err)


# --- demo --------------------------------------------------------------------------------


def test_demo_reports_progress_and_a_summary(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    code, out, err = run(capsys, "--db", db_url, "demo", "--hosts", "6")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("  ") for line in lines[:-1]), "progress lines are indented"
    assert lines[-1].startswith("demo datacenter ready in ")
    assert " 6 hosts" in lines[-1] and " zones" in lines[-1] and " s: " in lines[-1]


def test_demo_twice_needs_replace(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    assert run(capsys, "--db", db_url, "demo", "--hosts", "4")[0] == 0

    code, out, err = run(capsys, "--db", db_url, "demo", "--hosts", "4")
    assert code == 1
    assert out == ""
    line = one_error_line(err)
    assert "already built" in line and "--replace" in line

    code, out, err = run(capsys, "--db", db_url, "demo", "--hosts", "5", "--replace")
    assert (code, err) == (0, "")
    assert "removed the old demo" in out
    assert " 5 hosts" in out.splitlines()[-1]


@pytest.mark.parametrize("hosts", ["0", "-3"])
def test_demo_with_no_hosts_is_refused(
    capsys: pytest.CaptureFixture[str], db_url: str, hosts: str
) -> None:
    code, out, err = run(capsys, "--db", db_url, "demo", f"--hosts={hosts}")
    assert (code, out) == (1, "")
    assert "host count" in one_error_line(err)


# --- console -----------------------------------------------------------------------------


class FakeApp:
    """Stands in for StratusApp: records how the console would have started."""

    started: list[FakeApp] = []

    def __init__(self, caller, config) -> None:  # type: ignore[no-untyped-def]
        self.caller, self.config = caller, config
        self.return_code: int | None = None

    def run(self) -> None:
        FakeApp.started.append(self)


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> type[FakeApp]:
    import tui.app

    FakeApp.started = []
    monkeypatch.setattr(tui.app, "StratusApp", FakeApp)
    return FakeApp


def _zone_count(db_url: str) -> int:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT count(*) FROM zone").fetchone()[0]


def test_console_on_a_new_database_builds_the_demo_first(
    capsys: pytest.CaptureFixture[str], db_url: str, fake_app: type[FakeApp]
) -> None:
    code, out, err = run(capsys, "--db", db_url)
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 1 and "building the demo" in out
    assert _zone_count(db_url) > 0
    (app,) = fake_app.started
    assert app.config.read_only is False
    assert app.caller.username == "admin"

    # The second start opens the same cloud: no demo this time.
    code, out, _ = run(capsys, "--db", db_url, "console", "--read-only")
    assert (code, out) == (0, "")
    assert fake_app.started[-1].config.read_only is True


def test_console_skips_the_demo_when_configured(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    fake_app: type[FakeApp],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_DEMO_ON_FIRST_START", "false")
    code, out, _ = run(capsys, "--read-only", "--db", db_url)
    assert (code, out) == (0, "")
    assert _zone_count(db_url) == 0
    assert fake_app.started[-1].config.read_only is True


def test_console_exit_status_is_the_apps(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    fake_app: type[FakeApp],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_DEMO_ON_FIRST_START", "no")

    def crashed(self: FakeApp) -> None:
        self.return_code = 1

    monkeypatch.setattr(FakeApp, "run", crashed)
    assert run(capsys, "--db", db_url)[0] == 1


# --- configuration and unexpected failures -----------------------------------------------


def test_bad_config_file_is_one_line(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    config = home / "config" / "stratus.toml"
    config.parent.mkdir(parents=True)
    config.write_text('log_level = "INFO"\nread_only = \n')
    code, _, err = run(capsys, "db", "current")
    assert code == 1
    line = one_error_line(err)
    assert str(config) in line and "line 2" in line


def test_bad_environment_value_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_READ_ONLY", "perhaps")
    code, _, err = run(capsys, "db", "current")
    assert code == 1
    assert "STRATUS_READ_ONLY" in one_error_line(err)


def test_unexpected_error_points_at_the_log(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object, config: object) -> int:
        raise RuntimeError("wires crossed\nsecond line")

    monkeypatch.setattr(cli.main, "cmd_db_current", broken)
    code, out, err = run(capsys, "db", "current")
    assert (code, out) == (1, "")
    line = one_error_line(err)
    log = home / "state" / "stratus.log"
    assert "RuntimeError: wires crossed second line" in line and str(log) in line
    logged = log.read_text()
    assert "Traceback" in logged and "wires crossed" in logged


def test_interrupt_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(args: object, config: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.main, "cmd_db_current", interrupted)
    code, _, err = run(capsys, "db", "current")
    assert code == 130
    assert one_error_line(err) == "stratus: error: interrupted"


def test_commands_log_to_the_file_not_the_terminal(
    capsys: pytest.CaptureFixture[str], db_url: str, home: Path
) -> None:
    code, out, err = run(capsys, "--db", db_url, "db", "upgrade")
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    logged = (home / "state" / "stratus.log").read_text()
    assert "db upgrade" in logged
    assert "Running upgrade" in logged  # alembic's own INFO lines land in the file


def test_passwords_stay_out_of_the_log(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, _, err = run(capsys, "--db", "nosuch://ops:hunter2@db1/stratus", "db", "current")
    assert code == 1
    assert "hunter2" not in err
    logged = (home / "state" / "stratus.log").read_text()
    assert "nosuch://ops:***@db1/stratus" in logged
    assert "hunter2" not in logged
