"""Every value placed in a page is escaped unless it is markup already."""

from __future__ import annotations

from stepforge.services.console.markup import Html, escape, join, render


def test_text_is_escaped_quotes_included() -> None:
    assert escape("<a href='x'>\"&\"</a>").text == (
        "&lt;a href=&#x27;x&#x27;&gt;&quot;&amp;&quot;&lt;/a&gt;"
    )


def test_markup_passes_through_unchanged() -> None:
    bold = Html("<b>bold</b>")

    assert escape(bold) is bold


def test_render_escapes_every_value_it_fills_in() -> None:
    page = render('<a title="{title}">{body}</a>', title='" onmouseover="x', body="<i>")

    assert page.text == '<a title="&quot; onmouseover=&quot;x">&lt;i&gt;</a>'


def test_render_escapes_the_items_of_a_list_and_keeps_markup_items() -> None:
    page = render("<p>{items}</p>", items=["<x>", Html("<br>"), 3])

    assert page.text == "<p>&lt;x&gt;<br>3</p>"


def test_a_value_that_looks_like_a_placeholder_is_not_filled_in() -> None:
    page = render("<p>{first}{second}</p>", first="{second}", second="<2>")

    assert page.text == "<p>{second}&lt;2&gt;</p>"


def test_join_trusts_its_separator_only() -> None:
    assert join(["<a>", "<b>"], "<hr>").text == "&lt;a&gt;<hr>&lt;b&gt;"
