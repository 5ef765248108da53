"""The sign-in page and the error page."""

from __future__ import annotations

from stepforge.services.console.components import link, notice
from stepforge.services.console.markup import Html, render

# Messages the sign-in page shows for `?notice=`; only these fixed texts can
# appear, whatever the query says.
NOTICES = {
    "signed-out": ("You are signed out.", "info"),
    "expired": ("Your session ended; sign in again.", "info"),
    "token-rejected": (
        "The environment no longer accepts your token; sign in with a valid one.",
        "warning",
    ),
}


def sign_in(
    csrf: str,
    environment_url: str,
    next_path: str,
    *,
    error: str = "",
    notice_key: str = "",
) -> Html:
    """The sign-in form; `error` says why the last attempt failed."""
    message = Html("")
    if error:
        message = notice(error, "error")
    elif notice_key in NOTICES:
        message = notice(*NOTICES[notice_key])
    return render(
        SIGN_IN,
        message=message,
        csrf=csrf,
        next=next_path,
        url=environment_url,
        invalid=Html(' aria-invalid="true"') if error else Html(""),
    )


def error_page(status: int, title: str, message: str) -> Html:
    """What went wrong, in words, with a way back."""
    return render(
        '<div class="error-page"><p class="status-code">{status}</p>'
        "<h1>{title}</h1>{message}<p>{back}</p></div>",
        status=str(status),
        title=title,
        message=notice(message, "error") if message else Html(""),
        back=link("/", "Back to the console"),
    )


SIGN_IN = """<div class="sign-in">
<h1>Sign in</h1>
<p>Sign in with the token of an environment, such as <code>STEPFORGE_SDK_TOKEN</code>
in the env file <code>stepforge up</code> writes. The console shows that
environment only, and keeps the token on the server, never in the browser.</p>
{message}
<form method="post" action="/sign-in" class="stack">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<label for="token">Environment token</label>
<input id="token" name="token" type="password" autocomplete="off" required
 autofocus spellcheck="false"{invalid}>
<button type="submit" class="button primary">Sign in</button>
</form>
<p class="muted">Environment: <code>{url}</code></p>
</div>
"""
