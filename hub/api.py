"""The hub's HTTP API and WebSocket event stream for household clients (OpenAPI at ``/docs``).

The FastAPI ``lifespan`` composes every long-lived part — the embedded broker
when no broker is configured, the SQLite store, the hub and its MQTT link —
and hands the hub to requests through the lifespan state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from fastapi import Depends, FastAPI, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from brand_adapters.registry import manifests
from hub.broker import free_port, secured_embedded
from hub.crypto import Identity
from hub.devices import Device, Role
from hub.errors import (
    AmbiguousBrand,
    BrokerError,
    Forbidden,
    FoyerError,
    InvalidConsent,
    NoPendingKeys,
    NotOptedIn,
    PairingFailed,
    PayloadTooLarge,
    Unauthorized,
    UnknownBrand,
    UnknownConversation,
)
from hub.mqtt import BrokerSettings, MqttLink, parse_broker_url
from hub.protocol import MAX_PAYLOAD_BYTES, MAX_TEXT_CHARS
from hub.service import Hub
from hub.settings import Settings, get_settings
from hub.store import BrandRow, Store

__all__ = ["create_app"]

log = logging.getLogger(__name__)

COOKIE = "foyer_token"

_STATUS: dict[type[FoyerError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    PairingFailed: 403,
    UnknownBrand: 404,
    UnknownConversation: 404,
    NotOptedIn: 403,
    AmbiguousBrand: 409,
    PayloadTooLarge: 413,
    BrokerError: 503,
    NoPendingKeys: 409,
    InvalidConsent: 422,
}


PAGE = 500
Since = Annotated[int, Query(ge=0, le=2**63 - 1, description="A seq seen before.")]


class State(TypedDict):
    hub: Hub


class SendRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    brand: str | None = Field(default=None, description="Brand id; routed from the text if unset.")
    conversation: str | None = Field(default=None, description="Continue this conversation.")
    lang: Literal["fr", "en"] | None = Field(default=None, description="Detected if unset.")


def _brand_json(brand: BrandRow) -> dict[str, Any]:
    return {
        "id": brand.id,
        "name": brand.manifest.name,
        "opted_in": brand.opted_in,
        "opted_at": brand.opted_at,
        "online": brand.online,
        "keys": brand.pinned.fingerprint() if brand.pinned else None,
        "share_satisfaction": brand.share_satisfaction,
        "pending_keys": brand.pending.fingerprint() if brand.pending else None,
        "manifest": brand.manifest.model_dump(),
    }


class HandoffRequest(BaseModel):
    accept_offer: bool = Field(default=False, description="The member said yes to the hub's offer.")
    lang: Literal["fr", "en"] = "fr"


class LangRequest(BaseModel):
    lang: Literal["fr", "en"] = "fr"


class RatingRequest(BaseModel):
    rating_bot: Annotated[int, Field(ge=1, le=5)] | None = None
    rating_human: Annotated[int, Field(ge=1, le=5)] | None = None
    comment: Annotated[str, Field(max_length=1000)] | None = None
    lang: Literal["fr", "en"] = "fr"


class IdeaRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class BrandSettings(BaseModel):
    share_satisfaction: bool = Field(description="Send this brand the household's ratings.")


class OptInRequest(BaseModel):
    grant: list[str] = Field(default_factory=list, description="Scopes the household grants.")
    deny: list[str] = Field(default_factory=list, description="Scopes the household refuses.")
    member: str = Field(default="household", description="'household', or one member's id.")


class ConsentRequest(BaseModel):
    scopes: dict[str, Literal["granted", "denied", "revoked", "inherit"]]
    member: str = "household"


class DataAnswer(BaseModel):
    answer: Literal["once", "always", "no"]
    value: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, description="The datum to share (needed for once/always)."
    )
    lang: Literal["fr", "en"] = "fr"


class CategoryRequest(BaseModel):
    category: Literal["transactional", "service", "marketing"]
    allowed: bool


class QuietHoursRequest(BaseModel):
    member: str = "household"
    hours: Annotated[str, Field(pattern=r"^\d\d:\d\d-\d\d:\d\d$")] | None = Field(
        default=None, description="'22:00-07:30' (local time); null: no quiet hours."
    )


class PairRequest(BaseModel):
    code: Annotated[str, Field(min_length=4, max_length=20, description="The code the hub shows.")]
    name: Annotated[str, Field(min_length=1, max_length=60, description="This device's name.")]


class CodeRequest(BaseModel):
    role: Role = "member"


def _hub_of(request: HTTPConnection) -> Hub:
    hub: Hub = request.state.hub
    return hub


def _token(connection: HTTPConnection) -> str | None:
    """The device token: ``Authorization: Bearer``, the web app's cookie, or (WebSocket) ``?token=``."""
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if connection.cookies.get(COOKIE):
        return connection.cookies[COOKIE]
    if connection.scope["type"] == "websocket":
        return connection.query_params.get("token")
    return None


def member(request: Request) -> Device:
    """Any paired device that was not revoked."""
    return _hub_of(request).store.devices.authenticate(_token(request))


def admin(request: Request) -> Device:
    device = member(request)
    if not device.is_admin:
        raise Forbidden(f"device {device.name!r} is a member device; this needs an admin device")
    return device


Member = Annotated[Device, Depends(member)]
Admin = Annotated[Device, Depends(admin)]


class _BodyLimit:
    """Refuse request bodies over the protocol's size limit before reading them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > MAX_PAYLOAD_BYTES:
                response = JSONResponse(
                    {
                        "error": "too_large",
                        "message": f"request body is {int(length)} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                    },
                    status_code=413,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _broker_for(
    settings: Settings, stack: AsyncExitStack, hub_id: str, brand_ids: list[str]
) -> BrokerSettings:
    """The configured broker, or an embedded one that refuses anonymous clients."""
    if settings.broker_url:
        return parse_broker_url(
            settings.broker_url,
            ca_file=settings.broker_ca,
            cert_file=settings.broker_cert,
            key_file=settings.broker_key,
        )
    port = free_port(preferred=settings.embedded_broker_port)
    if port != settings.embedded_broker_port:
        log.warning("port %s is busy: the embedded broker uses %s", settings.embedded_broker_port, port)
    broker, account, secrets = secured_embedded(
        settings.database.parent / "broker", hub_id, brand_ids, "127.0.0.1", port
    )
    await stack.enter_async_context(broker)
    print(f"embedded broker on mqtt://127.0.0.1:{port}; brand accounts in {secrets}", flush=True)
    return account


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            store = stack.enter_context(Store(settings.database, synchronous=settings.db_sync))
            hub_id = settings.hub_id or store.meta("hub_id") or f"home-{secrets.token_hex(4)}"
            store.set_meta("hub_id", hub_id)
            directory = manifests(with_test=settings.auto_opt_in)
            brand_ids = sorted({m.id for m in directory} | {b.id for b in store.brands()})
            broker = await _broker_for(settings, stack, hub_id, brand_ids)
            hub = Hub(
                store,
                identity=Identity.load_or_create(settings.keys_path),
                idle_close_ms=int(settings.idle_close_minutes * 60_000),
                hub_id=hub_id,
                directory=directory,
                link_factory=lambda h: MqttLink(
                    broker, f"foyer-hub-{hub_id}", h.on_mqtt, on_connect=h.on_connect
                ),
            )
            await stack.enter_async_context(hub)
            for brand_id in settings.auto_opt_in:
                await hub.opt_in(brand_id)
            app.state.broker = broker
            log.info("hub %s ready; broker %s; database %s", hub_id, broker.url, settings.database)
            yield {"hub": hub}

    app = FastAPI(
        title="Foyer hub",
        summary="The household's door to the brands it chose.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit)

    @app.exception_handler(FoyerError)
    async def foyer_error(request: Request, err: FoyerError) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(err, kind)), 400)
        _hub_of(request).refused[f"http_{err.code}"] += 1
        body: dict[str, Any] = {"error": err.code, "message": str(err)}
        if isinstance(err, AmbiguousBrand):
            body["candidates"] = err.candidates
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        _hub_of(request).refused["http_invalid_request"] += 1
        return JSONResponse(
            {"error": "invalid_request", "message": f"{where}: {first['msg']}"}, status_code=422
        )

    _device_routes(app)
    _routes(app)
    _human_routes(app)
    _consent_routes(app)
    _web_app(app)
    return app


def _consent_routes(app: FastAPI) -> None:
    """What each brand may know, what it learned, export, erase, and quiet by default."""

    @app.get("/api/brands/{brand_id}/consents", tags=["consent"])
    async def consents(request: Request, _: Member, brand_id: str) -> dict[str, Any]:
        hub = _hub_of(request)
        hub.brand(brand_id)
        receipts = hub.consents.receipts(brand_id)
        return {
            "states": [asdict(state) for state in hub.consents.states(brand_id)],
            "granted": sorted(hub.consents.granted(brand_id, "household")),
            "receipts": [{"record": r.record, "sig": r.sig} for r in receipts],
            "hub_keys": hub.wire.public.as_dict(),
        }

    @app.post("/api/brands/{brand_id}/consents", tags=["consent"])
    async def set_consents(request: Request, _: Admin, brand_id: str, body: ConsentRequest) -> dict[str, Any]:
        """Grant, refuse or revoke scopes; the answer is the signed consent receipt."""
        return _hub_of(request).set_consents(brand_id, dict(body.scopes), body.member)

    @app.get("/api/brands/{brand_id}/knows", tags=["consent"])
    async def knows(request: Request, _: Member, brand_id: str) -> dict[str, Any]:
        """What does this brand know about us: every datum disclosed, when, why, in which message."""
        hub = _hub_of(request)
        hub.brand(brand_id)
        summary = hub.ledger.what_brand_knows(brand_id)
        return {
            "brand": brand_id,
            "scopes": {scope: asdict(item) for scope, item in summary.items()},
            "entries": [asdict(e) for e in hub.ledger.entries(brand_id)],
            "forget": hub.forget_status(brand_id),
        }

    @app.post("/api/data-requests/{request_id}", status_code=202, tags=["consent"])
    async def answer_data_request(
        request: Request, _: Member, request_id: str, body: DataAnswer
    ) -> dict[str, Any]:
        """Answer a brand's request for a datum: once, always (grants the scope), or no."""
        result = await _hub_of(request).answer_data_request(
            request_id, body.answer, body.value, lang=body.lang
        )
        return {"message": result.message.as_dict()}

    @app.get("/api/ledger/verify", tags=["consent"])
    async def verify(request: Request, _: Member) -> dict[str, Any]:
        """Prove the ledger's hash chain is intact."""
        return asdict(_hub_of(request).ledger.verify())

    @app.get("/api/export", tags=["consent"])
    async def export(request: Request, _: Member) -> JSONResponse:
        """Everything the hub holds for the household, as one JSON file (docs/export.md)."""
        return JSONResponse(
            _hub_of(request).export(),
            headers={"Content-Disposition": 'attachment; filename="foyer-export.json"'},
        )

    @app.post("/api/brands/{brand_id}/erase", tags=["consent"])
    async def erase(request: Request, _: Admin, brand_id: str) -> dict[str, Any]:
        """Erase a brand here and ask it to forget us; re-sent until it answers."""
        return await _hub_of(request).erase(brand_id)

    @app.get("/api/brands/{brand_id}/erase", tags=["consent"])
    async def erase_status(request: Request, _: Member, brand_id: str) -> dict[str, Any]:
        return _hub_of(request).forget_status(brand_id)

    @app.get("/api/brands/{brand_id}/categories", tags=["consent"])
    async def get_categories(request: Request, _: Member, brand_id: str) -> dict[str, Any]:
        hub = _hub_of(request)
        hub.brand(brand_id)
        return {"brand": brand_id, "allowed": hub.policy.allowed(brand_id)}

    @app.post("/api/brands/{brand_id}/categories", tags=["consent"])
    async def categories(request: Request, _: Admin, brand_id: str, body: CategoryRequest) -> dict[str, Any]:
        """Allow a category of notifications (marketing is off by default)."""
        hub = _hub_of(request)
        hub.brand(brand_id)
        hub.policy.allow(brand_id, body.category, body.allowed)
        return {"brand": brand_id, "allowed": hub.policy.allowed(brand_id)}

    @app.get("/api/quiet-hours", tags=["consent"])
    async def get_quiet_hours(request: Request, _: Member, member: str = "household") -> dict[str, Any]:
        quiet = _hub_of(request).policy.quiet_hours(member)
        hours = (
            None
            if quiet is None
            else f"{quiet.start // 60:02d}:{quiet.start % 60:02d}-{quiet.end // 60:02d}:{quiet.end % 60:02d}"
        )
        return {"member": member, "hours": hours}

    @app.put("/api/quiet-hours", tags=["consent"])
    async def quiet_hours(request: Request, _: Member, body: QuietHoursRequest) -> dict[str, Any]:
        hub = _hub_of(request)
        try:
            hub.policy.set_quiet_hours(body.member, body.hours)
        except ValueError as err:
            raise InvalidConsent(str(err)) from err
        return {"member": body.member, "hours": body.hours}

    @app.get("/api/brands/{brand_id}/notification-counts", tags=["consent"])
    async def notification_counts(
        request: Request, _: Member, brand_id: str, lang: str = "fr"
    ) -> dict[str, Any]:
        """Delivered, held, blocked, dropped — this month, with the sentence to show."""
        hub = _hub_of(request)
        brand = hub.brand(brand_id)
        counts = hub.policy.counts(brand_id)
        sentences = [
            hub.policy.sentence(brand_id, brand.manifest.name, category, action, lang=lang)
            for category, actions in counts.items()
            for action, n in actions.items()
            if n and action in ("hold", "block", "drop")
        ]
        return {"brand": brand_id, "counts": counts, "sentences": sentences}


WEB = Path(__file__).parent / "web"
SECURITY_HEADERS = {
    # Every asset comes from the hub itself: nothing to load from elsewhere, no inline script.
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _web_app(app: FastAPI) -> None:
    """The household web app: static files served by the hub (see docs/webapp.md)."""
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html", headers=SECURITY_HEADERS)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _human_routes(app: FastAPI) -> None:
    """A person on request, the end of a conversation, ratings, ideas, how brands treat us."""

    @app.post("/api/conversations/{conversation_id}/handoff", status_code=202, tags=["humans"])
    async def handoff(
        request: Request, _: Member, conversation_id: str, body: HandoffRequest
    ) -> dict[str, Any]:
        """ "Parler à un humain": ask the brand for a person in this conversation."""
        origin: Literal["member", "hub"] = "hub" if body.accept_offer else "member"
        result = await _hub_of(request).request_human(conversation_id, origin=origin, lang=body.lang)
        return {"message": result.message.as_dict(), "notice": result.notice}

    @app.post("/api/conversations/{conversation_id}/callback", status_code=202, tags=["humans"])
    async def callback(
        request: Request, _: Member, conversation_id: str, body: LangRequest
    ) -> dict[str, Any]:
        """No one was there: ask the brand to call back."""
        result = await _hub_of(request).request_callback(conversation_id, lang=body.lang)
        return {"message": result.message.as_dict()}

    @app.post("/api/conversations/{conversation_id}/close", tags=["humans"])
    async def close(request: Request, _: Member, conversation_id: str, body: LangRequest) -> dict[str, Any]:
        """End the conversation; the hub then asks for a rating."""
        hub = _hub_of(request)
        await hub.close(conversation_id, by="member", lang=body.lang)
        return hub.store.conversation(conversation_id)

    @app.post("/api/conversations/{conversation_id}/rating", tags=["humans"])
    async def rating(
        request: Request, _: Member, conversation_id: str, body: RatingRequest
    ) -> dict[str, Any]:
        """Rate the conversation (1–5, bot and human separately): kept at home, shared only if allowed."""
        return await _hub_of(request).rate(
            conversation_id,
            rating_bot=body.rating_bot,
            rating_human=body.rating_human,
            comment=body.comment,
            lang=body.lang,
        )

    @app.post("/api/brands/{brand_id}/ideas", status_code=202, tags=["humans"])
    async def idea(request: Request, _: Member, brand_id: str, body: IdeaRequest) -> dict[str, Any]:
        """Send the brand an idea or a suggestion; its receipt is the acknowledgement."""
        result = await _hub_of(request).send_idea(brand_id, body.text)
        return {"message": result.message.as_dict(), "conversation": result.message.conversation_id}

    @app.post("/api/brands/{brand_id}/settings", tags=["brands"])
    async def brand_settings(
        request: Request, _: Admin, brand_id: str, body: BrandSettings
    ) -> dict[str, Any]:
        hub = _hub_of(request)
        hub.brand(brand_id)
        hub.store.set_share_satisfaction(brand_id, body.share_satisfaction)
        return _brand_json(hub.brand(brand_id))

    @app.get("/api/stats", tags=["humans"])
    async def stats(request: Request, _: Member) -> list[dict[str, Any]]:
        """How each brand treats the household: response times, time to a human, satisfaction."""
        return _hub_of(request).service_stats()


def _device_routes(app: FastAPI) -> None:
    @app.post("/api/pair", tags=["devices"])
    async def pair(request: Request, body: PairRequest, response: Response) -> dict[str, Any]:
        """Trade a one-time pairing code for a device token (also set as an HttpOnly cookie)."""
        device, token = _hub_of(request).store.devices.pair(body.code, body.name)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            path="/",
            max_age=10 * 365 * 24 * 3600,
            secure=request.url.scheme == "https",
        )
        return {"token": token, "device": asdict(device)}

    @app.get("/api/me", tags=["devices"])
    async def me(device: Member) -> dict[str, Any]:
        return asdict(device)

    @app.post("/api/pairing-codes", tags=["devices"])
    async def pairing_code(request: Request, _: Admin, body: CodeRequest) -> dict[str, Any]:
        """A one-time code (valid 10 minutes) for pairing another device."""
        return {
            "code": _hub_of(request).store.devices.create_code(body.role),
            "role": body.role,
            "expires_in_s": 600,
        }

    @app.get("/api/devices", tags=["devices"])
    async def devices(request: Request, _: Admin) -> list[dict[str, Any]]:
        return [asdict(d) for d in _hub_of(request).store.devices.list()]

    @app.delete("/api/devices/{device_id}", tags=["devices"])
    async def revoke(request: Request, _: Admin, device_id: str) -> dict[str, Any]:
        """Revoke a device: its token stops working on its next request."""
        if not _hub_of(request).store.devices.revoke(device_id):
            raise Unauthorized(f"no active device {device_id!r}")
        return {"revoked": device_id}


def _routes(app: FastAPI) -> None:
    @app.get("/api/health", tags=["hub"])
    async def health(request: Request) -> dict[str, Any]:
        """Liveness, broker connection, and the counters of refused input."""
        return _hub_of(request).health()

    @app.get("/api/brands", tags=["brands"])
    async def brands(request: Request, _: Member) -> list[dict[str, Any]]:
        """The brand directory, with the household's opt-ins and each brand's presence."""
        return [_brand_json(b) for b in _hub_of(request).store.brands()]

    @app.get("/api/brands/{brand_id}", tags=["brands"])
    async def brand(request: Request, _: Member, brand_id: str) -> dict[str, Any]:
        return _brand_json(_hub_of(request).brand(brand_id))

    @app.post("/api/brands/{brand_id}/opt-in", tags=["brands"])
    async def opt_in(
        request: Request, _: Admin, brand_id: str, body: OptInRequest | None = None
    ) -> dict[str, Any]:
        """Open the door to this brand, granting and refusing its scopes one by one (signed receipt)."""
        body = body or OptInRequest()
        brand = await _hub_of(request).opt_in(brand_id, grant=body.grant, deny=body.deny, member=body.member)
        return _brand_json(brand)

    @app.post("/api/brands/{brand_id}/approve-keys", tags=["brands"])
    async def approve_keys(request: Request, _: Admin, brand_id: str) -> dict[str, Any]:
        """Accept the new keys a brand announced (compare the fingerprint with the brand's own site)."""
        return _brand_json(_hub_of(request).approve_keys(brand_id))

    @app.post("/api/brands/{brand_id}/opt-out", tags=["brands"])
    async def opt_out(request: Request, _: Admin, brand_id: str) -> dict[str, Any]:
        """Close the door: the hub stops listening and refuses its messages."""
        return _brand_json(await _hub_of(request).opt_out(brand_id))

    @app.post("/api/messages", status_code=202, tags=["conversations"])
    async def send(request: Request, _: Member, body: SendRequest) -> dict[str, Any]:
        """Accept a member's message; it is stored before this answers, then delivered."""
        result = await _hub_of(request).send(
            body.text, brand_id=body.brand, conversation_id=body.conversation, lang=body.lang
        )
        return {
            "message": result.message.as_dict(),
            "conversation": result.message.conversation_id,
            "brand": result.brand.id,
            "status": result.message.status,
            "notice": result.notice,
            "masked": result.masked,
        }

    @app.get("/api/conversations", tags=["conversations"])
    async def conversations(request: Request, _: Member) -> list[dict[str, Any]]:
        return _hub_of(request).store.conversations()

    @app.get("/api/conversations/{conversation_id}", tags=["conversations"])
    async def conversation(request: Request, _: Member, conversation_id: str) -> dict[str, Any]:
        store = _hub_of(request).store
        messages = store.messages(conversation_id)
        return {
            "id": conversation_id,
            "brand": store.conversation_brand(conversation_id),
            "conversation": store.conversation(conversation_id),
            "rating": store.rating(conversation_id),
            "messages": [m.as_dict() for m in messages],
        }

    @app.get("/api/notifications", tags=["conversations"])
    async def notifications(request: Request, _: Member) -> list[dict[str, Any]]:
        return [m.as_dict() for m in _hub_of(request).store.notifications()]

    @app.get("/api/changes", tags=["conversations"])
    async def changes(request: Request, _: Member, since: Since = 0) -> dict[str, Any]:
        """Messages created or changed after ``since``, a page at a time (the WebSocket's polling twin).

        Ask again with ``since=last_seq`` while ``more`` is true.
        """
        rows = _hub_of(request).store.changes_since(since, limit=PAGE)
        return {
            "last_seq": rows[-1].seq if rows else since,
            "head_seq": _hub_of(request).store.last_seq,
            "more": len(rows) == PAGE,
            "messages": [m.as_dict() for m in rows],
        }

    @app.websocket("/api/events")
    async def events(websocket: WebSocket, since: Since | None = None) -> None:
        """Live events: ``message`` (new or changed) and ``brand`` (opt-in, presence).

        With ``?since=N`` the stream starts with every message changed after ``N``, so a
        client that reconnects misses nothing. A client too slow to keep up is closed with
        code 1013: reconnect with ``?since=`` the last ``seq`` seen.
        """
        hub: Hub = websocket.state.hub
        try:
            hub.store.devices.authenticate(_token(websocket))
        except Unauthorized as err:
            hub.refused["ws_unauthorized"] += 1
            await websocket.close(code=4401, reason=str(err)[:120])
            return
        await websocket.accept()
        async with hub.listen() as queue:
            while since is not None:  # the backlog, a page at a time, then live events
                rows = hub.store.changes_since(since, limit=PAGE)
                for row in rows:
                    await websocket.send_json({"event": "message", "data": row.as_dict()})
                since = rows[-1].seq if len(rows) == PAGE else None
            await _stream(websocket, queue)


async def _stream(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    receiver = asyncio.create_task(_drain(websocket), name="ws-drain")
    try:
        while not receiver.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            event = getter.result()
            if event["event"] == "overflow":
                await websocket.close(code=1013, reason="too slow: reconnect with ?since=")
                break
            await websocket.send_json(event)
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await receiver


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
