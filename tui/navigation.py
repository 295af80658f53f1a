"""Where `:` can go: every console view by name and aliases, and what opens it.

`DESTINATIONS` holds one entry per view. Table views open a `ResourceScreen` on the
engine listing of the same name (`engine.listing.VIEWS`); `dashboard` and `topology` open
their own screens (`:ips` and `:nets`, IPAM's public addresses and guest networks, are
table views like the others). A view whose data does not exist in a build can be
registered `available=False` with a message saying so: asking for it answers with that
message instead of an error.

Adding a table view: add its listing to `engine.listing.VIEWS`; it is registered here
from there, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.suggester import Suggester

from engine.listing import VIEWS


@dataclass(frozen=True)
class Destination:
    name: str
    title: str
    aliases: tuple[str, ...] = ()
    # "table": a ResourceScreen on the listing `name`; otherwise the named screen.
    kind: str = "table"
    available: bool = True
    unavailable: str = ""  # why it cannot open yet, shown when asked for
    help: str = ""

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


DESTINATIONS: dict[str, Destination] = {}


def register(destination: Destination) -> None:
    """Add or replace a destination (the same name replaces, e.g. a placeholder)."""
    DESTINATIONS[destination.name] = destination


register(
    Destination(
        "dashboard",
        "Dashboard",
        ("home", "dash", "d"),
        kind="dashboard",
        help="capacity per zone, problems, jobs, events",
    )
)
register(
    Destination(
        "topology",
        "Topology",
        ("tree", "topo", "t"),
        kind="topology",
        help="zone → pod → cluster → host → VM tree with capacity",
    )
)
register(
    Destination(
        "secgroups",
        "Security groups",
        ("sg", "sgs", "securitygroups"),
        kind="secgroups",
        help="security groups and their rules (add and remove rules)",
    )
)
register(
    Destination(
        "deploy",
        "Deploy a VM",
        ("new", "deployvm"),
        kind="deploy",
        help="the deploy wizard: choices, placement preview, one progress line per VM",
    )
)
register(
    Destination(
        "affinity",
        "Affinity groups",
        ("ag", "affinitygroups"),
        kind="affinity",
        help="affinity groups with their VMs and hosts (create, delete)",
    )
)
for _view in VIEWS.values():
    register(Destination(_view.name, _view.title, _view.aliases, help=f"table of {_view.title}"))


def find(word: str) -> Destination | None:
    """The destination named or aliased `word` (case-insensitive), else None."""
    wanted = word.strip().lower().lstrip(":")
    for destination in DESTINATIONS.values():
        if wanted in destination.words:
            return destination
    return None


def completions() -> list[str]:
    """Every name then every alias, for the command line's suggester."""
    names = [d.name for d in DESTINATIONS.values()]
    aliases = [a for d in DESTINATIONS.values() for a in d.aliases if len(a) > 1]
    return names + [a for a in aliases if a not in names]


class ViewSuggester(Suggester):
    """Completes a view name from its first letters (names before aliases)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=False)

    async def get_suggestion(self, value: str) -> str | None:
        typed = value.strip().lower()
        if not typed:
            return None
        for word in completions():
            if word.startswith(typed):
                return word
        return None
