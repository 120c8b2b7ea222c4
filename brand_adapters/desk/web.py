"""The desk's web console and JSON API (FastAPI), served in the adapter's own process and event loop.

Every route but the login page, the login calls and the static files needs an agent:
the ``foyer_desk`` session cookie (HttpOnly, SameSite=Strict) set by the login form, or
``Authorization: Bearer TOKEN`` from ``POST /desk/api/login``. Every handler is ``async``:
it runs on the event loop, next to the MQTT link, and talks to the :class:`BrandApp`
directly (one SQLite connection, one thread).

    GET  /desk                                   the console (or the login form)
    POST /desk/login · /desk/logout              the form's login and logout (cookie)
    POST /desk/api/login                         {"login", "password"} → {"token", "agent"}
    POST /desk/api/logout
    GET  /desk/api/me · /desk/api/status
    GET  /desk/api/queue                         waiting then taken conversations, with context
    GET  /desk/api/conversations/{id}
    POST /desk/api/conversations/{id}/take       409 if another agent has it
    POST /desk/api/conversations/{id}/reply      {"text"} → {"id"}; 409 unless you hold it
    POST /desk/api/conversations/{id}/release    {"outcome": "back_to_bot" | "closed"}
    GET  /desk/api/callbacks · POST /desk/api/callbacks/{id}/take · …/done
    GET  /desk/api/ideas · /desk/api/feedback
    WS   /desk/api/events                        {"kind", "conversation", "text"} on each change
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from brand_adapters.desk import page
from brand_adapters.desk.agents import Agent, Directory, LoginThrottle, Sessions
from brand_adapters.desk.state import DeskConflict, DeskError, DeskEvent, UnknownDeskItem
from brand_adapters.sdk import BrandApp
from hub.protocol import MAX_TEXT_CHARS

__all__ = ["COOKIE", "create_desk_app"]

log = logging.getLogger(__name__)

COOKIE = "foyer_desk"
_EVENT_BACKLOG = 256


class _Refused(Exception):
    """An HTTP refusal with the JSON body every desk error has: ``{"error", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Body):
    login: Annotated[str, Field(min_length=1, max_length=40)]
    password: Annotated[str, Field(min_length=1, max_length=200)]


class ReplyRequest(_Body):
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    lang: Literal["fr", "en"] | None = None


class ReleaseRequest(_Body):
    outcome: Literal["back_to_bot", "closed"]


class _Desk:
    """What the routes share: the brand app, the agents, their sessions and who is connected."""

    def __init__(self, app: BrandApp, agents: Directory, sessions: Sessions) -> None:
        self.app = app
        self.agents = agents
        self.sessions = sessions
        self.throttle = LoginThrottle()
        self.online: Counter[str] = Counter()
        self.zone = ZoneInfo(app.manifest.humans.timezone)

    def login(self, login: str, password: str) -> tuple[str, Agent]:
        if self.throttle.blocked(login):
            raise _Refused(
                429, "too_many_attempts", f"too many wrong passwords for {login!r}; wait 10 minutes"
            )
        agent = self.agents.verify(login, password)
        if agent is None:
            if self.agents.get(login) is not None:
                self.throttle.failed(login)
            raise _Refused(401, "unauthorized", "wrong login or password")
        self.throttle.succeeded(login)
        return self.sessions.open(agent.login), agent

    def agent_for(self, token: str | None) -> Agent | None:
        login = self.sessions.login_of(token) if token else None
        return self.agents.get(login) if login else None

    def opening(self) -> str:
        if self.app.humans_open():
            return "Ouvert : les demandes arrivent ici · Open: requests come here"
        fr, en = self.app.next_available("fr"), self.app.next_available("en")
        if fr is None:
            return "Fermé · Closed"
        return f"Fermé, prochaine ouverture {fr} · Closed, next opening {en}"

    def live(self, agent: Agent) -> str:
        app = self.app
        return page.live_fragment(
            agent,
            queue=app.desk_queue(),
            callbacks=app.desk_callbacks(),
            ideas=app.ideas(),
            feedback=app.feedback(),
            zone=self.zone,
            opening=self.opening(),
        )


def _bearer(request: Request | WebSocket) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _same_origin(request: Request | WebSocket) -> bool:
    """A browser's request from another site is refused (the cookie is SameSite=Strict too)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _state(request: Request) -> _Desk:
    desk: _Desk = request.app.state.desk
    return desk


async def _current_agent(request: Request) -> Agent:
    desk = _state(request)
    token = _bearer(request)
    if token is None:
        token = request.cookies.get(COOKIE)
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            raise _Refused(403, "forbidden", "cross-site request refused")
    agent = desk.agent_for(token)
    if agent is None:
        raise _Refused(401, "unauthorized", "log in at /desk, or send Authorization: Bearer <token>")
    return agent


AgentDep = Annotated[Agent, Depends(_current_agent)]


def create_desk_app(app: BrandApp, agents: Directory, *, sessions: Sessions | None = None) -> FastAPI:
    """The desk for ``app``'s agents; attaches the desk to ``app`` (hand-offs are accepted from now on)."""
    web = FastAPI(
        title=f"{app.manifest.name} — desk",
        docs_url=None,
        redoc_url=None,
        openapi_url="/desk/api/openapi.json",
    )
    web.state.desk = _Desk(app, agents, sessions or Sessions())
    app.attach_desk()

    @web.exception_handler(_Refused)
    async def refused(_: Request, err: _Refused) -> JSONResponse:
        return JSONResponse({"error": err.code, "message": str(err)}, status_code=err.status)

    @web.exception_handler(DeskError)
    async def desk_error(_: Request, err: DeskError) -> JSONResponse:
        status = 409 if isinstance(err, DeskConflict) else 404 if isinstance(err, UnknownDeskItem) else 400
        return JSONResponse({"error": err.code, "message": str(err)}, status_code=status)

    @web.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse(
            {"error": "invalid_request", "message": f"{where}: {first['msg']}"}, status_code=422
        )

    @web.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        host = request.headers.get("host", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
            f" connect-src 'self' ws://{host} wss://{host}; form-action 'self'; frame-ancestors 'none';"
            " base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on form posts.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    _page_routes(web)
    _api_routes(web)
    _event_route(web)
    return web


def _set_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/desk",
    )


def _page_routes(web: FastAPI) -> None:
    @web.get("/desk", response_class=HTMLResponse, include_in_schema=False)
    async def console(request: Request) -> HTMLResponse:
        desk = _state(request)
        agent = desk.agent_for(request.cookies.get(COOKIE))
        if agent is None:
            return HTMLResponse(page.login_page(desk.app.manifest.name))
        return HTMLResponse(page.console_page(desk.app.manifest.name, agent, desk.live(agent)))

    @web.get("/desk/partials/live", response_class=HTMLResponse, include_in_schema=False)
    async def live(request: Request, agent: AgentDep) -> HTMLResponse:
        return HTMLResponse(_state(request).live(agent))

    @web.post("/desk/login", include_in_schema=False)
    async def form_login(request: Request) -> Response:
        desk = _state(request)
        if not _same_origin(request):
            raise _Refused(403, "forbidden", "cross-site request refused")
        fields = parse_qs((await request.body())[:4096].decode(errors="replace"))
        login = fields.get("login", [""])[0].strip()
        password = fields.get("password", [""])[0]
        try:
            token, _ = desk.login(login, password)
        except _Refused as err:
            message = (
                "Identifiant ou mot de passe incorrect · Wrong login or password"
                if err.status == 401
                else "Trop d'essais : patientez 10 minutes · Too many attempts: wait 10 minutes"
            )
            return HTMLResponse(page.login_page(desk.app.manifest.name, message), status_code=err.status)
        response = RedirectResponse("/desk", status_code=303)
        _set_cookie(request, response, token)
        return response

    @web.post("/desk/logout", include_in_schema=False)
    async def form_logout(request: Request) -> Response:
        if not _same_origin(request):
            raise _Refused(403, "forbidden", "cross-site request refused")
        token = request.cookies.get(COOKIE)
        if token:
            _state(request).sessions.close(token)
        response = RedirectResponse("/desk", status_code=303)
        response.delete_cookie(COOKIE, path="/desk")
        return response

    @web.get("/desk/desk.css", include_in_schema=False)
    async def css() -> Response:
        return Response(page.CSS, media_type="text/css")

    @web.get("/desk/favicon.svg", include_in_schema=False)
    async def icon() -> Response:
        return Response(page.ICON, media_type="image/svg+xml")

    @web.get("/desk/desk.js", include_in_schema=False)
    async def js() -> Response:
        return Response(page.JS, media_type="text/javascript")


def _api_routes(web: FastAPI) -> None:
    @web.post("/desk/api/login", tags=["agents"])
    async def api_login(request: Request, body: LoginRequest) -> dict[str, Any]:
        """Log in a scripted agent: the token goes in ``Authorization: Bearer``."""
        token, agent = _state(request).login(body.login, body.password)
        return {"token": token, "agent": {"login": agent.login, "name": agent.name}}

    @web.post("/desk/api/logout", tags=["agents"])
    async def api_logout(request: Request, _: AgentDep) -> dict[str, bool]:
        token = _bearer(request) or request.cookies.get(COOKIE)
        if token:
            _state(request).sessions.close(token)
        return {"ok": True}

    @web.get("/desk/api/me", tags=["agents"])
    async def me(agent: AgentDep) -> dict[str, str]:
        return {"login": agent.login, "name": agent.name}

    @web.get("/desk/api/status", tags=["desk"])
    async def status(request: Request, _: AgentDep) -> dict[str, Any]:
        desk = _state(request)
        queue = desk.app.desk_queue()
        return {
            "humans_open": desk.app.humans_open(),
            "next_available": {"fr": desk.app.next_available("fr"), "en": desk.app.next_available("en")},
            "waiting": sum(1 for c in queue if c.status == "waiting"),
            "taken": sum(1 for c in queue if c.status == "taken"),
            "agents_online": sorted(login for login, n in desk.online.items() if n > 0),
        }

    @web.get("/desk/api/queue", tags=["desk"])
    async def queue(request: Request, _: AgentDep) -> list[dict[str, Any]]:
        """Waiting conversations (by arrival, with ``position``), then those agents hold."""
        return [c.as_dict() for c in _state(request).app.desk_queue()]

    @web.get("/desk/api/conversations/{conversation}", tags=["desk"])
    async def conversation(request: Request, _: AgentDep, conversation: str) -> dict[str, Any]:
        return _state(request).app.desk_conversation(conversation).as_dict()

    @web.post("/desk/api/conversations/{conversation}/take", tags=["desk"])
    async def take(request: Request, agent: AgentDep, conversation: str) -> dict[str, Any]:
        """Take a waiting conversation (409 if another agent has it)."""
        app = _state(request).app
        return app.desk_take(conversation, agent.name, agent_id=agent.login).as_dict()

    @web.post("/desk/api/conversations/{conversation}/reply", tags=["desk"])
    async def reply(
        request: Request, agent: AgentDep, conversation: str, body: ReplyRequest
    ) -> dict[str, str]:
        """Answer the member, as yourself (409 unless you hold the conversation)."""
        app = _state(request).app
        return {
            "id": app.desk_reply(conversation, agent.name, body.text, agent_id=agent.login, lang=body.lang)
        }

    @web.post("/desk/api/conversations/{conversation}/release", tags=["desk"])
    async def release(
        request: Request, agent: AgentDep, conversation: str, body: ReleaseRequest
    ) -> dict[str, Any]:
        """Hand the conversation back to the bot, or close it."""
        app = _state(request).app
        return app.desk_release(
            conversation, body.outcome, agent_name=agent.name, agent_id=agent.login
        ).as_dict()

    @web.get("/desk/api/callbacks", tags=["desk"])
    async def callbacks(request: Request, _: AgentDep, include_done: bool = False) -> list[dict[str, Any]]:
        return [c.as_dict() for c in _state(request).app.desk_callbacks(include_done=include_done)]

    @web.post("/desk/api/callbacks/{callback_id}/take", tags=["desk"])
    async def callback_take(request: Request, agent: AgentDep, callback_id: str) -> dict[str, Any]:
        """Answer a callback request in its conversation (you take it at once)."""
        app = _state(request).app
        return app.desk_take_callback(callback_id, agent.name, agent_id=agent.login).as_dict()

    @web.post("/desk/api/callbacks/{callback_id}/done", tags=["desk"])
    async def callback_done(request: Request, agent: AgentDep, callback_id: str) -> dict[str, Any]:
        return _state(request).app.desk_callback_done(callback_id, agent.name).as_dict()

    @web.get("/desk/api/ideas", tags=["desk"])
    async def ideas(request: Request, _: AgentDep) -> list[dict[str, Any]]:
        return [i.as_dict() for i in _state(request).app.ideas()]

    @web.get("/desk/api/feedback", tags=["desk"])
    async def feedback(request: Request, _: AgentDep) -> list[dict[str, Any]]:
        return [f.as_dict() for f in _state(request).app.feedback()]


def _event_route(web: FastAPI) -> None:
    @web.websocket("/desk/api/events")
    async def events(socket: WebSocket) -> None:
        """Each change at the desk, as JSON; the first message says who you are and how many wait."""
        desk: _Desk = socket.app.state.desk
        token = _bearer(socket) or socket.query_params.get("token") or socket.cookies.get(COOKIE)
        agent = desk.agent_for(token)
        if agent is None or not _same_origin(socket):
            await socket.close(code=4401)
            return
        await socket.accept()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_EVENT_BACKLOG)

        def push(event: DeskEvent) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled page reloads all on the next one
                queue.put_nowait(event.as_dict())

        unsubscribe = desk.app.subscribe_desk(push)
        desk.online[agent.login] += 1
        try:
            waiting = sum(1 for c in desk.app.desk_queue() if c.status == "waiting")
            await socket.send_text(json.dumps({"kind": "hello", "agent": agent.name, "waiting": waiting}))
            await _relay(socket, queue)
        finally:
            unsubscribe()
            desk.online[agent.login] -= 1


async def _relay(socket: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Send events until the page goes away (what it sends is read and ignored)."""

    async def send() -> None:
        while True:
            await socket.send_text(json.dumps(await queue.get(), ensure_ascii=False))

    async def drain() -> None:
        while True:
            await socket.receive_text()

    tasks = [asyncio.create_task(send()), asyncio.create_task(drain())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # the page is gone either way
                await task
