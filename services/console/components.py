"""The pieces pages are made of: tables, detail lists, sections, links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stepforge.services.console.formatting import NOT_SET
from stepforge.services.console.markup import Html, escape, render
from stepforge.services.console.web import path_to


def link(path: str, label: object) -> Html:
    return render('<a href="{path}">{label}</a>', path=path, label=label)


def code(text: object) -> Html:
    return render("<code>{text}</code>", text=text)


def muted(text: object) -> Html:
    return render('<span class="muted">{text}</span>', text=text)


def or_not_set(value: object) -> Html:
    """The value, or a muted dash when it is empty."""
    if value is None or value == "" or value == []:
        return muted(NOT_SET)
    return escape(value)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    empty: str,
    label: str = "",
) -> Html:
    """A table of escaped cells, or the `empty` sentence when there are no rows."""
    if not rows:
        return render('<p class="empty">{empty}</p>', empty=empty)
    head = [
        render('<th scope="col">{header}</th>', header=header) for header in headers
    ]
    body = [
        render(
            "<tr>{cells}</tr>",
            cells=[render("<td>{cell}</td>", cell=cell) for cell in row],
        )
        for row in rows
    ]
    return render(
        '<div class="table-wrap"><table aria-label="{label}">'
        "<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>",
        label=label,
        head=head,
        body=body,
    )


def details(pairs: Sequence[tuple[str, object]]) -> Html:
    """A description list of (term, value) pairs."""
    items = [
        render("<div><dt>{term}</dt><dd>{value}</dd></div>", term=term, value=value)
        for term, value in pairs
    ]
    return render('<dl class="details">{items}</dl>', items=items)


def section(title: str, body: Html, *, anchor: str = "") -> Html:
    return render(
        '<section class="panel"{anchor}><h2>{title}</h2>{body}</section>',
        anchor=render(' id="{anchor}"', anchor=anchor) if anchor else Html(""),
        title=title,
        body=body,
    )


def columns(*panels: Html) -> Html:
    """Panels side by side where the screen is wide enough."""
    return render('<div class="columns">{panels}</div>', panels=list(panels))


def heading(title: str, badge: Html | None = None, actions: Html | None = None) -> Html:
    """The page's title, with a status badge and buttons beside it."""
    return render(
        '<div class="heading"><h1>{title}</h1>{badge}'
        '<div class="actions">{actions}</div></div>',
        title=title,
        badge=badge or Html(""),
        actions=actions or Html(""),
    )


def pagination(
    listing: str,
    next_page_token: str,
    *,
    on_first_page: bool,
    query: Mapping[str, str] | None = None,
) -> Html:
    """Links to the first and the next page of the `listing` path with its
    `query`, where there are such pages."""
    query = query or {}
    links = []
    if not on_first_page:
        links.append(link(path_to(listing, query=query), "First page"))
    if next_page_token:
        following = path_to(listing, query={**query, "page_token": next_page_token})
        links.append(link(following, "Next page"))
    if not links:
        return Html("")
    return render('<nav class="pages" aria-label="Pages">{links}</nav>', links=links)


def notice(text: str, kind: str = "info") -> Html:
    """A boxed message; `kind` is one of info, error, warning."""
    return render(
        '<p class="notice notice-{kind}" role="{role}">{text}</p>',
        kind=kind,
        role="alert" if kind == "error" else "status",
        text=text,
    )


def preformatted(text: str, css_class: str = "") -> Html:
    return render(
        '<pre class="{css_class}">{text}</pre>', css_class=css_class, text=text
    )
