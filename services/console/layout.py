"""The frame every page shares: head, top bar, breadcrumbs and content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepforge.services.console.markup import Html, render

NAV_ITEMS = (
    ("steps", "Steps"),
    ("pipelines", "Pipelines"),
    ("executions", "Executions"),
)


@dataclass(frozen=True)
class Chrome:
    """What the frame shows around a page's content."""

    environment_url: str
    stylesheet: str
    script: str
    favicon: str
    # The sign-out form's CSRF token; None before sign-in.
    csrf: str | None = None


def page(
    chrome: Chrome,
    title: str,
    content: Html,
    *,
    section: str = "",
    crumbs: Sequence[tuple[str, str]] = (),
    refresh_s: int = 0,
) -> Html:
    """A whole page. `crumbs` are (label, path) pairs before the title;
    `refresh_s` asks the script to reload the page that often."""
    return render(
        PAGE,
        title=title,
        stylesheet=chrome.stylesheet,
        script=chrome.script,
        favicon=chrome.favicon,
        refresh=str(refresh_s) if refresh_s else "",
        nav=_nav(chrome, section),
        session=_session(chrome),
        crumbs=_crumbs(crumbs, title),
        content=content,
    )


def _nav(chrome: Chrome, section: str) -> Html:
    if chrome.csrf is None:
        return Html("")
    links = [
        render(
            '<a href="/{key}"{current}>{label}</a>',
            key=key,
            label=label,
            current=Html(' aria-current="page"' if key == section else ""),
        )
        for key, label in NAV_ITEMS
    ]
    return render(
        '<nav class="sections" aria-label="Sections">{links}</nav>', links=links
    )


def _session(chrome: Chrome) -> Html:
    environment = render(
        '<span class="environment" title="The environment this console reads">'
        "{url}</span>",
        url=chrome.environment_url,
    )
    if chrome.csrf is None:
        return render(
            '<div class="session">{environment}</div>', environment=environment
        )
    return render(
        '<div class="session">{environment}'
        '<form method="post" action="/sign-out">'
        '<input type="hidden" name="csrf" value="{csrf}">'
        '<button type="submit" class="button quiet">Sign out</button>'
        "</form></div>",
        environment=environment,
        csrf=chrome.csrf,
    )


def _crumbs(crumbs: Sequence[tuple[str, str]], title: str) -> Html:
    if not crumbs:
        return Html("")
    links = [
        render(
            '<a href="{path}">{label}</a><span class="separator">/</span>',
            path=path,
            label=label,
        )
        for label, path in crumbs
    ]
    return render(
        '<nav class="crumbs" aria-label="Breadcrumbs">{links}'
        '<span aria-current="page">{title}</span></nav>',
        links=links,
        title=title,
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{title} · Stepforge</title>
<link rel="icon" href="{favicon}" type="image/svg+xml">
<link rel="stylesheet" href="{stylesheet}">
<script src="{script}" defer></script>
</head>
<body data-refresh-s="{refresh}">
<header class="topbar">
<a class="brand" href="/">Stepforge <span>console</span></a>
{nav}
{session}
</header>
<main>
{crumbs}
{content}
</main>
</body>
</html>
"""
