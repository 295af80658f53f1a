"""The `stratus` command: the console (default), the demo, all-in-one init, the headless
server (serve), jobs, schema upgrades.

Every failure ends as one line on stderr, `stratus: error: <message>`, and a non-zero exit
status: 2 for a usage error, 1 otherwise. An engine error (`StratusError`) already says
what failed and what to do; anything unexpected is logged with its traceback in the log
file, and the line points there. No traceback ever reaches the terminal.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

from engine import paths
from engine.config import Config, load_config, setup_logging
from engine.errors import StratusError

PROG = "stratus"
EXIT_ERROR = 1
EXIT_USAGE = 2
# 128 + SIGINT, what shells expect from a program stopped by Ctrl-C.
EXIT_INTERRUPTED = 130

log = logging.getLogger("stratus.cli")


class UsageError(Exception):
    """A command line argparse refused; `prog` is the (sub)command it was given to."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing the usage block and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def _version() -> str:
    try:
        return metadata.version("stratus")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


# --- commands --------------------------------------------------------------------------


def _database_url(config: Config) -> str:
    from engine.db import default_database_url

    return config.database_url or default_database_url()


def cmd_console(args: argparse.Namespace, config: Config) -> int:
    from engine.bootstrap import open_cloud

    cloud = open_cloud(_database_url(config))
    try:
        if cloud.fresh and config.demo_on_first_start:
            from engine.demo import build_demo

            print(
                "stratus: new database, building the demo datacenter first "
                "(demo_on_first_start = false skips it)",
                flush=True,
            )
            build_demo(cloud.admin, progress=log.info)

        from tui.app import StratusApp

        app = StratusApp(cloud.admin, config)
        app.run()
        return app.return_code or 0
    finally:
        cloud.db.dispose()


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from engine.bootstrap import open_cloud
    from engine.demo import build_demo

    cloud = open_cloud(_database_url(config))
    try:

        def progress(line: str) -> None:
            print(f"  {line}", flush=True)
            log.info("demo: %s", line)

        summary = build_demo(
            cloud.admin,
            hosts=args.hosts,
            vms=args.vms,
            replace=args.replace,
            progress=progress,
        )
        print(f"demo datacenter ready in {summary.seconds:.1f} s: {summary.describe()}")
        return 0
    finally:
        cloud.db.dispose()


def cmd_db_upgrade(args: argparse.Namespace, config: Config) -> int:
    from engine.db import Database, redacted
    from engine.schema import upgrade

    db = Database(_database_url(config))
    try:
        db.check_connection()
        before, after = upgrade(db)
        where = f"database {redacted(db.url)}"
        if before == after:
            print(f"{where}: already at {after}")
        else:
            print(f"{where}: schema {before or '(empty)'} → {after}")
        return 0
    finally:
        db.dispose()


def cmd_db_current(args: argparse.Namespace, config: Config) -> int:
    from engine.db import Database, redacted
    from engine.schema import check_not_newer, current_revision, head_revision

    db = Database(_database_url(config))
    try:
        db.check_connection()
        current, head = current_revision(db), head_revision()
        if current is None:
            state = "empty: `stratus db upgrade` creates the schema"
        elif current == head:
            state = "up to date"
        else:
            try:
                check_not_newer(db)
                state = "behind: `stratus db upgrade` brings it to head"
            except StratusError:
                state = "newer than this Stratus knows"
        print(f"database {redacted(db.url)}")
        print(f"  current: {current or '(none)'}")
        print(f"  head:    {head}")
        print(f"  state:   {state}")
        return 0
    finally:
        db.dispose()


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    from engine.bootstrap import open_cloud
    from engine.errors import InvalidParameter

    if not args.all_in_one:
        raise InvalidParameter(
            "init: say what to initialise: --all-in-one turns this machine into a one-host cloud"
        )
    from engine.hosts.allinone import init_all_in_one
    from engine.hosts.manager import HostManager

    cloud = open_cloud(_database_url(config))
    manager = HostManager(cloud.db)
    try:
        result = init_all_in_one(
            cloud.admin,
            manager,
            uri=args.uri,
            primary_path=args.primary_path,
            secondary_path=args.secondary_path,
            bridge=args.bridge,
            netns=args.netns,
        )
        print(f"{PROG}: all-in-one: {result.describe()}")
        return 0
    finally:
        manager.close()
        cloud.db.dispose()


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from cli.jobs import cmd_serve as serve

    return serve(args, config, _database_url(config))


def cmd_jobs(args: argparse.Namespace, config: Config) -> int:
    from cli.jobs import cmd_jobs as jobs

    return jobs(args, config, _database_url(config))


# --- parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Options that may come before or after the command. SUPPRESS keeps a subcommand's
    # unset option from overwriting the value given before the command.
    common = _Parser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="database URL (default: STRATUS_DATABASE_URL, the config file, "
        "else a SQLite file in the user data dir)",
    )
    read_only = _Parser(add_help=False)
    read_only.add_argument(
        "--read-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the console shows everything and changes nothing",
    )

    parser = _Parser(
        prog=PROG,
        description="Stratus cloud management server. Without a command, opens the console.",
        parents=[common, read_only],
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.set_defaults(handler=cmd_console)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    console = commands.add_parser(
        "console",
        parents=[common, read_only],
        help="open the full-screen console (the default)",
        description="Open the full-screen console. Migrates the database on start; on a "
        "brand-new database, builds the demo datacenter first (demo_on_first_start).",
    )
    console.set_defaults(handler=cmd_console)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="build the demo datacenter (simulated libvirt test-driver hosts)",
        description="Build the demo datacenter: zones, pods, clusters, simulated hosts, "
        "storage and offerings.",
    )
    demo.add_argument("--hosts", type=int, metavar="N", help="how many hosts in all")
    demo.add_argument(
        "--vms",
        type=int,
        metavar="M",
        help="how many Running VMs (database rows) to spread over the hosts (default: 3 per host)",
    )
    demo.add_argument(
        "--replace", action="store_true", help="delete the existing demo and build it again"
    )
    demo.set_defaults(handler=cmd_demo)

    init = commands.add_parser(
        "init",
        parents=[common],
        help="initialise this machine (--all-in-one: a one-host cloud on local libvirt)",
        description="--all-in-one: check libvirtd, then create a zone, pod, cluster and host for "
        "qemu:///system, a dir pool as primary storage, a directory as secondary storage "
        "and the guest bridge. Running it again changes nothing.",
    )
    init.add_argument(
        "--all-in-one", action="store_true", help="make this machine a one-host cloud"
    )
    # Hidden: tests point the command at the libvirt test driver and a network namespace.
    init.add_argument("--uri", default="qemu:///system", help=argparse.SUPPRESS)
    init.add_argument("--primary-path", default=None, help=argparse.SUPPRESS)
    init.add_argument("--secondary-path", default=None, help=argparse.SUPPRESS)
    init.add_argument("--bridge", default="cloudbr0", help=argparse.SUPPRESS)
    init.add_argument("--netns", default=None, help=argparse.SUPPRESS)
    init.set_defaults(handler=cmd_init)

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the engine without the console: host connections and the job workers",
        description="Run the management server headless: connect to every host (events, "
        "periodic resync, reconnect), recover jobs left by stopped processes, and run queued "
        "jobs. Several servers may share one PostgreSQL database. Ctrl-C or SIGTERM stops "
        "it after the running jobs finish.",
    )
    serve.add_argument(
        "--workers", type=int, default=4, metavar="N", help="jobs run at once (default 4)"
    )
    serve.set_defaults(handler=cmd_serve)

    jobs = commands.add_parser(
        "jobs",
        parents=[common],
        help="list jobs, show one, or cancel one",
        description="Without arguments, the newest jobs first. UUID shows one job with its "
        "result or error; --cancel UUID cancels a pending job or asks a running one to stop.",
    )
    jobs.add_argument("uuid", nargs="?", help="the job to show")
    jobs.add_argument("--cancel", metavar="UUID", help="cancel this job")
    jobs.add_argument("--active", action="store_true", help="only pending and running jobs")
    jobs.add_argument("--limit", type=int, default=50, metavar="N", help="how many (default 50)")
    jobs.set_defaults(handler=cmd_jobs)

    db = commands.add_parser(
        "db",
        parents=[common],
        help="database schema: upgrade, current",
        description="Database schema maintenance.",
    )
    db.set_defaults(handler=_needs_subcommand(db))
    db_commands = db.add_subparsers(title="commands", metavar="COMMAND")
    db_commands.add_parser(
        "upgrade",
        parents=[common],
        help="apply the schema migrations",
        description="Apply the schema migrations this Stratus ships (the console and the "
        "demo also apply them on start).",
    ).set_defaults(handler=cmd_db_upgrade)
    db_commands.add_parser(
        "current",
        parents=[common],
        help="show the database's schema revision and the newest one this Stratus knows",
        description="Show the database's schema revision and the newest one this Stratus knows.",
    ).set_defaults(handler=cmd_db_current)
    return parser


def _needs_subcommand(
    parser: argparse.ArgumentParser,
) -> Callable[[argparse.Namespace, Config], int]:
    def handler(args: argparse.Namespace, config: Config) -> int:
        raise UsageError("a command is required (upgrade or current)", parser.prog)

    return handler


# --- entry point -----------------------------------------------------------------------


def _loggable(argv: Sequence[str]) -> str:
    """The command line with any password in a URL hidden."""
    return " ".join(re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", arg) for arg in argv)


def _fail(message: str) -> None:
    # One line, whatever the message holds.
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging_ready = False
    try:
        args = build_parser().parse_args(argv)
        config = load_config(
            database_url=getattr(args, "db", None),
            read_only=getattr(args, "read_only", None) or None,
        )
        setup_logging(config)
        logging_ready = True
        log.info("stratus %s: %s", _version(), _loggable(sys.argv[1:] if argv is None else argv))
        return args.handler(args, config)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        _fail(f"{exc} (see '{exc.prog} --help')")
        return EXIT_USAGE
    except StratusError as exc:
        if logging_ready:
            log.info("failed: %s", exc.message)
        _fail(exc.message)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if logging_ready:
            log.exception("unexpected error")
            _fail(f"unexpected {detail} (the traceback is in {paths.log_file()})")
        else:
            _fail(f"unexpected {detail}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
