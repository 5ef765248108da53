"""HTML built from trusted templates, with every value escaped.

A page is made of `Html` pieces only. `render` escapes each value it fills in
unless that value is already `Html`, so text from the environment (names,
descriptions, log lines) can only ever appear as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Html:
    """Markup that is safe to send as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Html({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Html) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def escape(value: object) -> Html:
    """`value` as text: `Html` passes through, anything else is escaped,
    quotes included, so it is safe in element content and attribute values."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def render(template: str, **values: object) -> Html:
    """`template` with each `{name}` replaced by the escaped value; a list or
    tuple of values is escaped item by item and joined."""
    escaped = {name: _fill(value) for name, value in values.items()}
    return Html(template.format_map(escaped))


def join(pieces: Iterable[object], separator: str = "") -> Html:
    """The pieces escaped and joined; `separator` is trusted markup."""
    return Html(separator.join(escape(piece).text for piece in pieces))


def _fill(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return join(value).text
    return escape(value).text
