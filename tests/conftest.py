"""Shared fixtures.

Isolation: every test gets its own STRATUS_HOME (data, config, state, logs) and no
STRATUS_* variable from the developer's environment.

Databases:
  sqlite_url       a SQLite file URL in the test's tmp_path
  postgres_server  (session) a throwaway PostgreSQL on a unix socket; `.new_database()`
  postgres_url     a fresh, empty PostgreSQL database for the test
  db_url           parametrized: the SQLite URL, then the PostgreSQL one (marked `postgres`)
  cloud            open_cloud(sqlite_url): a migrated, seeded Cloud
  any_cloud        the same on each backend of db_url
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from engine.bootstrap import Cloud, open_cloud

# --- isolation ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def stratus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private STRATUS_HOME, so no test reads or writes the real user directories."""
    for name in list(os.environ):
        if name.startswith("STRATUS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "stratus-home"
    monkeypatch.setenv("STRATUS_HOME", str(home))
    return home


# --- SQLite ------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stratus.db'}"


# --- PostgreSQL --------------------------------------------------------------------------

PG_SUPERUSER = "stratus"


def find_pg_bin() -> Path | None:
    """The directory holding initdb: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = [Path(p).parent.parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not versions:
        return None
    newest = max(versions, key=lambda d: (d.name.isdigit(), int(d.name) if d.name.isdigit() else 0))
    return newest / "bin"


@dataclass
class PostgresServer:
    """A PostgreSQL listening only on a unix socket in `socket_dir`, trust auth."""

    bin_dir: Path
    base_dir: Path
    run_as: dict = field(default_factory=dict)  # subprocess user/group when we are root
    user: str = PG_SUPERUSER
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{dbname}?host={quote(str(self.socket_dir))}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            dbname=dbname, user=self.user, host=str(self.socket_dir), autocommit=True
        )

    def new_database(self) -> str:
        """CREATE DATABASE with a unique name; returns its SQLAlchemy URL."""
        name = f"stratus_test_{os.getpid()}_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/")[-1].split("?")[0]
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            **self.run_as,
        )

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# stratus test server: unix socket only, durability off for speed\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.base_dir / "server.log"),
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")


def _failure_line(exc: BaseException) -> str:
    text = getattr(exc, "stderr", None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def missing_part(reason: str) -> None:
    """Skip a test whose part the machine lacks; on CI, which must have every part, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must have every part, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL for the session; skips if the machine cannot run one.

    PostgreSQL refuses to run as root, so as root the server runs as `nobody` in a
    private directory handed to that user.
    """
    bin_dir = find_pg_bin()
    if bin_dir is None:
        missing_part("PostgreSQL server binaries (initdb) not found; run scripts/setup --test")
    # Directly in /tmp: `nobody` must be able to reach it, and a unix socket path has to
    # stay under ~100 bytes, which a long TMPDIR could break.
    base_dir = Path(
        tempfile.mkdtemp(prefix="stratus-pg-", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    run_as: dict = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(base_dir, nobody.pw_uid, nobody.pw_gid)
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    server = PostgresServer(bin_dir=bin_dir, base_dir=base_dir, run_as=run_as)
    try:
        server.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)
        missing_part(f"cannot start PostgreSQL from {bin_dir}: {_failure_line(exc)}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped afterwards."""
    url = postgres_server.new_database()
    yield url
    with contextlib.suppress(psycopg.Error):
        postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL on each backend."""
    return request.getfixturevalue(f"{request.param}_url")


# --- clouds ------------------------------------------------------------------------------


@pytest.fixture
def cloud(sqlite_url: str) -> Iterator[Cloud]:
    """A migrated, seeded cloud on a fresh SQLite file; `cloud.admin` is the admin caller."""
    opened = open_cloud(sqlite_url)
    yield opened
    opened.db.dispose()


@pytest.fixture
def any_cloud(db_url: str) -> Iterator[Cloud]:
    """Like `cloud`, once on SQLite and once on PostgreSQL."""
    opened = open_cloud(db_url)
    yield opened
    opened.db.dispose()


# --- the compute world: test-driver hosts, a host manager and a job runner -------------------
# Shared by the compute, attach and maintenance tests; a module may override any of them
# (more workers, a patched world) with a fixture of the same name.


@pytest.fixture
def world(cloud: Cloud, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`compute_world.make_compute_world`: zone z1, two test-driver hosts, template 'tiny',
    network 'guest', offering 'tiny'."""
    from compute_world import make_compute_world

    return make_compute_world(cloud, tmp_path)


@pytest.fixture
def manager(cloud: Cloud):  # type: ignore[no-untyped-def]
    from engine.hosts.manager import HostManager

    m = HostManager(cloud.db, debounce=0.1)
    yield m
    m.close()


@pytest.fixture
def runner(cloud: Cloud, manager):  # type: ignore[no-untyped-def]
    from engine.jobs import JobRunner

    with JobRunner(cloud.db, workers=2, hosts=manager, poll_seconds=0.05) as r:
        yield r
