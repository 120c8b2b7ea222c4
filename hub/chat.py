"""``foyer chat``: a terminal client (Rich) for talking to the household's brands."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
from rich.console import Console
from websockets.asyncio.client import connect

from hub.router import normalize

__all__ = ["run_chat"]

HELP = (
    "[dim]Écrivez votre message (la marque est reconnue dans le texte), ou :\n"
    "  /marques   les marques et leur présence     /nouveau  une nouvelle conversation\n"
    "  /marque ID parler à cette marque            /quitter  sortir[/dim]"
)


class ChatSession:
    def __init__(self, console: Console, http: httpx.AsyncClient, brand: str | None) -> None:
        self.console = console
        self.http = http
        self.brand = brand
        self.conversation: str | None = None
        self.names: dict[str, str] = {}
        self.pending: tuple[str, list[str]] | None = None  # a message waiting for "which brand?"

    async def show_brands(self) -> None:
        brands = (await self.http.get("/api/brands")).json()
        self.names = {b["id"]: b["name"] for b in brands}
        for b in brands:
            mark = "[green]✔[/]" if b["opted_in"] else "[dim]·[/]"
            presence = "[green]en ligne[/]" if b["online"] else "[yellow]hors ligne[/]"
            self.console.print(f" {mark} [bold]{b['name']}[/] ({b['id']}) {presence}")

    def show(self, message: dict[str, Any]) -> None:
        if message["direction"] != "in":
            return
        brand = self.names.get(message["brand_id"], message["brand_id"])
        who = message["author_name"] or brand
        tag = "👤" if message["author_kind"] == "human" else "🤖"
        style = "magenta" if message["type"] == "notification" else "cyan"
        self.console.print(f"[{style}]{tag} {who}[/] › {message['text']}")
        suggestions = message.get("extra", {}).get("suggestions") or []
        if suggestions:
            self.console.print("[dim]   suggestions : " + " · ".join(suggestions) + "[/]")

    def _answers_question(self, text: str) -> str | None:
        """The brand a member names in reply to "which brand?", if any."""
        if self.pending is None:
            return None
        wanted = normalize(text)
        return next(
            (b for b in self.pending[1] if wanted in (normalize(b), normalize(self.names.get(b, b)))), None
        )

    async def send(self, text: str) -> None:
        chosen = self._answers_question(text)
        if chosen is not None and self.pending is not None:
            text, self.brand, self.conversation = self.pending[0], chosen, None
        self.pending = None
        payload = {
            "text": text,
            "conversation": self.conversation,
            "brand": None if self.conversation else self.brand,
        }
        response = await self.http.post("/api/messages", json=payload)
        body = response.json()
        if response.status_code == 202:
            self.conversation = body["conversation"]
            self.brand = body["brand"]
            if body.get("notice"):
                self.console.print(f"[yellow]ℹ {body['notice']}[/]")
        elif body.get("error") == "ambiguous_brand":
            self.pending = (text, body.get("candidates", []))
            self.console.print(f"[yellow]? {body['message']}[/]")
        else:
            self.console.print(f"[red]✖ {body.get('message', response.text)}[/]")

    async def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        word, _, rest = line.partition(" ")
        if word in ("/quitter", "/quit", "/q"):
            return False
        if word in ("/marques", "/brands"):
            await self.show_brands()
        elif word in ("/nouveau", "/new"):
            self.conversation = None
            self.brand = None
            self.console.print("[dim]Nouvelle conversation.[/]")
        elif word in ("/marque", "/brand") and rest.strip():
            self.brand = rest.strip()
            self.conversation = None
            self.console.print(f"[dim]Vous écrivez à {self.names.get(self.brand, self.brand)}.[/]")
        else:
            self.console.print(HELP)
        return True


async def _listen(session: ChatSession, ws_url: str) -> None:
    since: int | None = None
    while True:
        joiner = "&" if "?" in ws_url else "?"
        url = ws_url if since is None else f"{ws_url}{joiner}since={since}"
        try:
            async with connect(url) as ws:
                async for raw in ws:
                    event = json.loads(raw)
                    if event["event"] == "message":
                        data = event["data"]
                        if since is None or data["seq"] > since:
                            since = data["seq"]
                            if data["status"] == "received":
                                session.show(data)
        except (OSError, ConnectionError) as err:
            session.console.print(f"[red]connexion au hub perdue ({err}), nouvel essai…[/]")
        except Exception as err:  # noqa: BLE001 - websockets raises many kinds; reconnect on all
            session.console.print(f"[red]connexion au hub perdue ({err}), nouvel essai…[/]")
        await asyncio.sleep(1)


async def run_chat(url: str, *, brand: str | None = None, token: str | None = None) -> int:
    console = Console()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http:
        try:
            health = (await http.get("/api/health")).json()
            me = await http.get("/api/me")
        except httpx.HTTPError as err:
            console.print(f"[red]Impossible de joindre le hub sur {url} : {err}[/]")
            return 1
        if me.status_code == 401:
            console.print(
                "[red]Ce terminal n'est pas appairé.[/] Sur le hub : [bold]foyer pair[/], "
                "puis ici : [bold]foyer login CODE[/]"
            )
            return 1
        session = ChatSession(console, http, brand)
        console.print(f"[bold]Foyer[/] — hub {health['hub_id']}")
        await session.show_brands()
        console.print(HELP)
        ws_url = url.replace("http", "ws", 1) + "/api/events"
        if token:
            ws_url += f"?token={token}"
        listener = asyncio.create_task(_listen(session, ws_url), name="chat-listen")
        try:
            while True:
                try:
                    line = (await asyncio.to_thread(input, "vous › ")).strip()
                except EOFError:
                    break
                if not line:
                    continue
                if line.startswith("/"):
                    if not await session.command(line):
                        break
                    continue
                await session.send(line)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    return 0
