"""A live screen of groups and their members in one list: security groups and their
rules, affinity groups and their VMs. Subclasses say what the list is called, how their
groups load (`fetch`, in a thread) and become options, and add their own actions."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine.context import Caller
from tui.screens.dashboard import replace_options
from tui.screens.jobs import JobWatching
from tui.screens.live import Clock, LiveScreen, LiveStatus
from tui.widgets.crumbs import Breadcrumbs
from tui.widgets.key_bar import KeyBar
from tui.widgets.title_bar import TitleBar


class GroupListScreen(JobWatching, LiveScreen):
    LIST_ID = "group-list"  # the OptionList's id (tests and subclasses query it)
    LIST_TITLE = "Groups"
    LOADING = "Loading…"
    DEFAULT_CSS = """
    GroupListScreen OptionList.group-list {
        height: 1fr;
        border: round $secondary;
        background: $background;
    }
    """

    def __init__(
        self, caller: Caller, *, refresh_seconds: float = 2.0, clock: Clock | None = None
    ) -> None:
        super().__init__(caller, refresh_seconds=refresh_seconds, clock=clock)
        self.crumb = self.TITLE
        self.groups: list[Any] = []

    def options(self, data: list[Any]) -> list[Option]:
        raise NotImplementedError

    @property
    def group_list(self) -> OptionList:
        return self.query_one(f"#{self.LIST_ID}", OptionList)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Breadcrumbs()
        yield LiveStatus(self.LOADING, markup=False)
        groups = OptionList(id=self.LIST_ID, classes="group-list")
        groups.border_title = self.LIST_TITLE
        yield groups
        yield KeyBar()

    def on_mount(self) -> None:
        super().on_mount()
        self.group_list.focus()

    def show(self, data: list[Any]) -> None:
        self.groups = data
        replace_options(self.group_list, self.options(data))
        self.refresh_bindings()

    @on(OptionList.OptionHighlighted)
    def _moved(self, _event: OptionList.OptionHighlighted) -> None:
        self.refresh_bindings()  # the actions depend on what is highlighted

    async def action_back(self) -> None:
        await self.app.run_action("back")
