"""The portal's pages: sign-in, change password, home, sign-out, set-password links and recovery."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from bot.context import Context
from bot.portal import auth, recovery
from bot.portal.client import Client
from bot.portal.csrf import CsrfRefused, check_csrf, csrf_token
from bot.time_zones import local_time, zone_of
from templates import TEMPLATES_DIR

EXTENSION_KEY = "credbot.portal"
_P = ParamSpec("_P")
SESSION_IDLE_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 8 * 60 * 60
PROVEN_SECONDS = 10 * 60
"""How long after signing in with the temporary password the change-password page does not ask for it."""
REFUSED_MESSAGE = "Incorrect username or password, or the account is temporarily locked."

portal = Blueprint(
    "portal",
    __name__,
    url_prefix="/portal",
    template_folder=str(TEMPLATES_DIR),
    static_folder=str(TEMPLATES_DIR / "portal" / "static"),
    static_url_path="/static",
)


def _ctx() -> Context:
    ctx: Context = current_app.extensions[EXTENSION_KEY]  # put there by bot.portal.init_portal
    return ctx


@portal.app_context_processor
def _template_globals() -> dict[str, Any]:
    settings = _ctx().settings
    return {
        "csrf_token": csrf_token,
        "company": settings.company_name,
        "min_length": settings.password_min_length,
    }


@portal.before_request
def _load_session() -> None:
    if request.endpoint == "portal.static":
        return
    if request.method == "POST":
        check_csrf()
    g.user = None
    now = time.time()
    if "since" in session and (
        now - session["since"] > SESSION_MAX_SECONDS or now - session.get("seen", 0) > SESSION_IDLE_SECONDS
    ):
        session.clear()
        return
    account_id, version = session.get("uid"), session.get("sv")
    if account_id is not None:
        g.user = auth.signed_in_user(_ctx(), account_id, version) if isinstance(version, int) else None
        if g.user is None:
            session.clear()
            return
    if "since" in session:
        session["seen"] = now


def _new_session(**values: Any) -> None:
    """Replace the session (and its CSRF token) with a fresh one holding `values`."""
    session.clear()
    now = time.time()
    session.update(values, since=now, seen=now)


def _start_session(account_id: int, session_version: int | None) -> None:
    """A fresh session for the signed-in account; the old one, and its CSRF token, are dropped."""
    _new_session(uid=account_id, sv=session_version)


def _client() -> Client:
    """Who sent this request, for the audit (the address TRUSTED_PROXIES makes the client's)."""
    return Client.of(request.remote_addr, request.user_agent.string)


def _proven() -> bool:
    """True while the session's sign-in with the temporary password is recent enough to stand for it."""
    proven_at = session.get("proven")
    now = _ctx().clock.now().timestamp()
    return isinstance(proven_at, float) and 0 <= now - proven_at <= PROVEN_SECONDS


def signed_in(view: Callable[_P, ResponseReturnValue]) -> Callable[_P, ResponseReturnValue]:
    """Only for signed-in employees; while they must change their password, only that page."""

    @wraps(view)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> ResponseReturnValue:
        if g.user is None:
            return redirect(url_for("portal.login"))
        if g.user.must_change_password and request.endpoint != "portal.change_password":
            return redirect(url_for("portal.change_password"))
        return view(*args, **kwargs)

    return wrapper


@portal.get("/")
@signed_in
def home() -> str:
    previous = session.get("previous")
    previous_sign_in = datetime.fromisoformat(previous) if isinstance(previous, str) else None
    zone = zone_of(g.user.time_zone, _ctx().settings.default_time_zone)
    return render_template(
        "portal/home.html",
        user=g.user,
        previous_sign_in=local_time(previous_sign_in, zone) if previous_sign_in else None,
        password_changed=local_time(changed, zone) if (changed := g.user.password_changed_at) else None,
        first_sign_in="previous" in session and previous is None,
    )


@portal.get("/login")
def login() -> Response | str:
    if g.user is not None:
        return redirect(url_for("portal.home"))
    return render_template("portal/login.html")


@portal.post("/login")
def login_submit() -> Response | tuple[str, int]:
    username = request.form.get("username", "")
    result = auth.sign_in(_ctx(), username, request.form.get("password", ""), client=_client())
    if result.outcome is auth.SignInOutcome.EXPIRED:
        session.clear()
        g.user = None
        return render_template("portal/expired.html"), 403
    if result.outcome is auth.SignInOutcome.REFUSED:
        return render_template("portal/login.html", error=REFUSED_MESSAGE, username=username[:100]), 401
    assert result.account_id is not None
    _start_session(result.account_id, result.session_version)
    session["previous"] = result.previous_sign_in.isoformat() if result.previous_sign_in else None
    if result.outcome is auth.SignInOutcome.MUST_CHANGE:
        session["proven"] = _ctx().clock.now().timestamp()  # the temporary password was typed just now
        return redirect(url_for("portal.change_password"), 303)
    return redirect(url_for("portal.home"), 303)


@portal.route("/password", methods=["GET", "POST"])
@signed_in
def change_password() -> Response | str | tuple[str, int]:
    user = g.user
    proven = user.must_change_password and _proven()
    if request.method == "GET":
        return render_template("portal/change_password.html", user=user, proven=proven)
    form = request.form
    change = auth.change_password(
        _ctx(),
        user.account_id,
        None if proven else form.get("current_password", ""),
        form.get("new_password", ""),
        form.get("confirm_password", ""),
        client=_client(),
    )
    if change.locked_until is not None:
        session.clear()
        g.user = None
        flash(_locked_message(change.locked_until))
        return redirect(url_for("portal.login"), 303)
    if not change.ok:
        return render_template(
            "portal/change_password.html",
            user=user,
            proven=proven,
            problems=change.problems,
            invalid=change.fields,
        ), 400
    previous = session.get("previous")
    _start_session(user.account_id, change.session_version)
    session["previous"] = previous
    auth.notify_password_changed(_ctx(), user.account_id)
    flash("Your password was changed. Use the new password from now on.")
    return redirect(url_for("portal.home"), 303)


@portal.post("/logout")
def logout() -> Response:
    if g.user is not None:
        auth.sign_out(_ctx(), g.user.account_id, session["sv"], client=_client())
    session.clear()
    flash("You have signed out.")
    return redirect(url_for("portal.login"), 303)


@portal.get("/setup/<token>")
def setup_start(token: str) -> str:
    """Only a page with a button: mail scanners that follow the link do not use it up."""
    return render_template("portal/setup_start.html", token=token)


@portal.post("/setup/<token>")
def setup_open(token: str) -> Response | tuple[str, int]:
    try:
        link_id = auth.open_setup_link(_ctx(), token)
    except auth.SetupLinkInvalid:
        return render_template("portal/link_invalid.html"), 410
    _new_session(setup_link=link_id)
    return redirect(url_for("portal.setup_password"), 303)


@portal.route("/setup/password", methods=["GET", "POST"])
def setup_password() -> Response | str | tuple[str, int]:
    link_id = session.get("setup_link")
    if link_id is None:
        return render_template("portal/link_invalid.html"), 410
    ctx = _ctx()
    try:
        user = auth.setup_link_user(ctx, link_id)
        if request.method == "GET":
            return render_template("portal/setup_password.html", user=user)
        form = request.form
        change = auth.set_password_with_link(
            ctx, link_id, form.get("new_password", ""), form.get("confirm_password", ""), client=_client()
        )
    except auth.SetupLinkInvalid:
        session.pop("setup_link", None)
        return render_template("portal/link_invalid.html"), 410
    if not change.ok:
        return render_template(
            "portal/setup_password.html", user=user, problems=change.problems, invalid=change.fields
        ), 400
    _start_session(user.account_id, change.session_version)
    auth.notify_password_changed(ctx, user.account_id)
    flash("Your password is set. You are signed in.")
    return redirect(url_for("portal.home"), 303)


@portal.get("/recover")
def recover() -> str:
    return render_template("portal/recover.html")


@portal.post("/recover")
def recover_submit() -> str:
    """The same answer, after the same work (one enqueue), whoever was named."""
    recovery.submit_request(_ctx(), request.form.get("who", ""), _client())
    return render_template("portal/recover_sent.html")


def _locked_message(locked_until: datetime) -> str:
    minutes = max(1, math.ceil((locked_until - _ctx().clock.now()).total_seconds() / 60))
    wait = "a minute" if minutes == 1 else f"{minutes} minutes"
    return (
        "Your current password was not correct, and after too many wrong passwords your account is "
        f"locked for now. You have been signed out: wait {wait}, then sign in again with the password "
        "from your email. If you do not have it any more, ask an administrator to send new credentials."
    )


@portal.errorhandler(CsrfRefused)
def _csrf_refused(error: CsrfRefused) -> tuple[str, int]:
    return render_template("portal/error.html", title="Form expired", message=error.description), 400
