"""Which detail screen and which forms each table view opens (they live in tui/screens).

Imports are late: the detail and form modules are only loaded when a view asks for them.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from engine.context import Caller

_DETAILS = {
    "zones": "ZoneDetailScreen",
    "pods": "PodDetailScreen",
    "clusters": "ClusterDetailScreen",
    "hosts": "HostDetailScreen",
    "vms": "VmDetailScreen",
}
# view -> (form class, the scope kinds it takes as <kind>_uuid keyword arguments)
_ADD_FORMS = {
    "zones": ("ZoneForm", ()),
    "pods": ("PodForm", ("zone",)),
    "clusters": ("ClusterForm", ("pod",)),
    "hosts": ("HostForm", ("cluster",)),
    "pools": ("PrimaryStorageForm", ("zone", "cluster")),
    "stores": ("SecondaryStorageForm", ("zone",)),
}
_EDIT_FORMS = {
    **{view: form for view, (form, _kinds) in _ADD_FORMS.items()},
    "settings": "SettingForm",
}


def has_details(view: str) -> bool:
    return view in _DETAILS


def has_add_form(view: str) -> bool:
    return view in _ADD_FORMS


def has_edit_form(view: str) -> bool:
    return view in _EDIT_FORMS


def detail_screen(caller: Caller, view: str, key: str, **options: Any) -> Screen[Any] | None:
    name = _DETAILS.get(view)
    if name is None:
        return None
    from tui.screens import details

    screen: Screen[Any] = getattr(details, name)(caller, key, **options)
    return screen


def add_form(caller: Caller, view: str, scope: dict[str, str]) -> Screen[Any] | None:
    entry = _ADD_FORMS.get(view)
    if entry is None:
        return None
    from tui.screens import forms

    name, kinds = entry
    where = {f"{kind}_uuid": scope[kind] for kind in kinds if kind in scope}
    form: Screen[Any] = getattr(forms, name)(caller, **where)
    return form


def edit_form(caller: Caller, view: str, key: str) -> Screen[Any] | None:
    name = _EDIT_FORMS.get(view)
    if name is None:
        return None
    from tui.screens import forms

    form: Screen[Any] = getattr(forms, name)(caller, key)
    return form
