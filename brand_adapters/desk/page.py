"""The desk's HTML, rendered on the server: French first, English labels beside; no external asset.

The page's live part (:func:`live_fragment`) is re-fetched by ``desk.js`` whenever the
event stream says something changed, so there is one renderer, here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from brand_adapters.desk.agents import Agent
from brand_adapters.desk.state import Callback, DeskConversation, DeskLine, Feedback, Idea

__all__ = ["CSS", "ICON", "JS", "console_page", "live_fragment", "login_page"]

_ROLE = {"member": "Client · Member", "bot": "Bot", "human": "Conseiller · Agent"}
_ORIGIN = {
    "member": "demandé par le client · asked by the member",
    "hub": "proposé par le foyer · offered by the hub",
    "bot": "passé par le bot · handed over by the bot",
}
_LANG = {"fr": "français", "en": "English"}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _clock(ms: int | None, zone: ZoneInfo) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%d/%m %H:%M")


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        '<link rel="icon" type="image/svg+xml" href="/desk/favicon.svg">'
        '<link rel="stylesheet" href="/desk/desk.css"></head>'
        f"<body>{body}</body></html>"
    )


def login_page(brand: str, error: str | None = None) -> str:
    """The agents' login form."""
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return _document(
        f"{brand} — Espace conseillers",
        f"""<main class="login">
<h1>{_e(brand)}</h1>
<p>Espace conseillers · <span lang="en">Agent desk</span></p>
{alert}
<form method="post" action="/desk/login">
<label>Identifiant · <span lang="en">Login</span>
<input name="login" autocomplete="username" required autofocus></label>
<label>Mot de passe · <span lang="en">Password</span>
<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Se connecter · <span lang="en">Log in</span></button>
</form>
</main>""",
    )


def console_page(brand: str, agent: Agent, live: str) -> str:
    """The whole console: header, and the live part the script refreshes."""
    return _document(
        f"{brand} — Espace conseillers",
        f"""<header class="top">
<h1>{_e(brand)} <small>Espace conseillers · <span lang="en">Agent desk</span></small></h1>
<p class="who">{_e(agent.name)}
<span id="link" class="offline" title="Mises à jour en direct · Live updates">●</span>
<form method="post" action="/desk/logout"><button type="submit">Se déconnecter · Log out</button></form></p>
</header>
<p id="flash" role="alert" hidden></p>
<main id="live" data-agent="{_e(agent.login)}">{live}</main>
<script src="/desk/desk.js"></script>""",
    )


def live_fragment(
    agent: Agent,
    *,
    queue: list[DeskConversation],
    callbacks: list[Callback],
    ideas: list[Idea],
    feedback: list[Feedback],
    zone: ZoneInfo,
    opening: str,
) -> str:
    """Opening status, queue, callbacks, ideas and feedback: the part of the page that changes."""
    waiting = sum(1 for c in queue if c.status == "waiting")
    cards = "".join(_card(agent, c, zone) for c in queue) or (
        '<p class="empty">Personne n\'attend · <span lang="en">No one is waiting</span></p>'
    )
    return f"""<p id="opening">{_e(opening)}</p>
<section id="queue" data-waiting="{waiting}">
<h2>File d'attente · <span lang="en">Queue</span> <span class="count">{waiting}</span></h2>
{cards}
</section>
<section id="callbacks">
<h2>Rappels demandés · <span lang="en">Callback requests</span>
 <span class="count">{len(callbacks)}</span></h2>
{_callbacks(callbacks, zone)}
</section>
<section id="ideas">
<h2>Idées des clients · <span lang="en">Customer ideas</span> <span class="count">{len(ideas)}</span></h2>
{_ideas(ideas, zone)}
</section>
<section id="feedback">
<h2>Avis · <span lang="en">Feedback</span> <span class="count">{len(feedback)}</span></h2>
{_feedback(feedback, zone)}
</section>"""


def _transcript(lines: Iterable[dict[str, str]]) -> str:
    items = "".join(
        f'<li class="{_e(line.get("role", ""))}"><b>{_e(_ROLE.get(line.get("role", ""), ""))}</b> '
        f"{_e(line.get('text', ''))}</li>"
        for line in lines
    )
    return f'<ol class="transcript">{items}</ol>' if items else ""


def _lines(lines: Iterable[DeskLine], zone: ZoneInfo) -> str:
    items = "".join(
        f'<li class="{_e(line.role)}"><time>{_clock(line.at, zone)}</time> '
        f"<b>{_e(line.author or _ROLE[line.role])}</b> {_e(line.text)}</li>"
        for line in lines
    )
    return f'<ol class="lines">{items}</ol>' if items else ""


def _card(agent: Agent, conv: DeskConversation, zone: ZoneInfo) -> str:
    mine = conv.status == "taken" and conv.agent_id == agent.login
    cid = _e(conv.conversation)
    if conv.status == "waiting":
        state = f'n°{conv.position} — en attente · <span lang="en">waiting</span>'
    elif mine:
        state = 'pris par vous · <span lang="en">yours</span>'
    else:
        state = f'pris par {_e(conv.agent_name)} · <span lang="en">taken by {_e(conv.agent_name)}</span>'
    context = _transcript(conv.transcript)
    details = (
        f'<details{" open" if not mine else ""}><summary>Contexte · <span lang="en">Context</span>'
        f" ({len(conv.transcript)})</summary>{context}</details>"
        if context
        else ""
    )
    if mine:
        thread = _lines(conv.lines, zone)
        actions = f"""<div class="reply">
<textarea data-conv="{cid}" rows="3" maxlength="4000"
 placeholder="Votre réponse (Ctrl+Entrée pour envoyer) · Your answer"></textarea>
<button data-action="reply" data-conv="{cid}">Envoyer · Send</button>
<button data-action="back_to_bot" data-conv="{cid}">Rendre au bot · Back to bot</button>
<button data-action="closed" data-conv="{cid}">Clore · Close</button>
</div>"""
    else:
        since = conv.since_queued()
        thread = (
            f'<p class="since">Messages depuis la demande · <span lang="en">Messages since</span>'
            f" ({len(since)})</p>{_lines(since, zone)}"
            if since
            else ""
        )
        actions = (
            f'<button data-action="take" data-conv="{cid}">Prendre · Take</button>'
            if conv.status == "waiting"
            else ""
        )
    return f"""<article class="conv {_e(conv.status)}{" mine" if mine else ""}" id="c-{cid}">
<h3>{state}</h3>
<p class="meta">{_e(_LANG.get(conv.lang, conv.lang))} · {_e(_ORIGIN.get(conv.origin, conv.origin))}
 · depuis · since {_clock(conv.queued_at, zone)}</p>
<p class="reason">Motif · <span lang="en">Reason</span> : {_e(conv.reason or "—")}</p>
{details}{thread}{actions}
</article>"""


def _callbacks(callbacks: list[Callback], zone: ZoneInfo) -> str:
    if not callbacks:
        return '<p class="empty">Aucun rappel en attente · <span lang="en">No callback pending</span></p>'
    items = []
    for cb in callbacks:
        answer = (
            f'<button data-action="callback-take" data-id="{_e(cb.id)}">'
            "Répondre dans la conversation · Answer</button>"
            if cb.conversation
            else ""
        )
        items.append(
            f"""<li class="callback"><time>{_clock(cb.requested_at, zone)}</time>
 {_e(_LANG.get(cb.lang, cb.lang))} — {_e(cb.reason or "")}{_transcript(cb.transcript)}
{answer}<button data-action="callback-done" data-id="{_e(cb.id)}">Traité · Done</button></li>"""
        )
    return f"<ul>{''.join(items)}</ul>"


def _ideas(ideas: list[Idea], zone: ZoneInfo) -> str:
    if not ideas:
        return '<p class="empty">Aucune idée pour l\'instant · <span lang="en">No ideas yet</span></p>'
    items = "".join(
        f'<li class="idea"><time>{_clock(i.received_at, zone)}</time> {_e(i.text)}</li>'
        for i in reversed(ideas[-50:])
    )
    return f"<ul>{items}</ul>"


def _feedback(feedback: list[Feedback], zone: ZoneInfo) -> str:
    if not feedback:
        return '<p class="empty">Aucun avis partagé · <span lang="en">No feedback shared</span></p>'
    items = []
    for f in reversed(feedback[-50:]):
        parts = []
        if f.rating_bot is not None:
            parts.append(f"bot {f.rating_bot}/5")
        if f.rating_human is not None:
            parts.append(f"conseiller · agent {f.rating_human}/5")
        comment = f" — « {_e(f.comment)} »" if f.comment else ""
        when = _clock(f.received_at, zone)
        items.append(f'<li class="feedback"><time>{when}</time> {_e(", ".join(parts))}{comment}</li>')
    return f"<ul>{''.join(items)}</ul>"


ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="5" r="3" fill="#1d3557"/><path d="M2 15c0-4 3-6 6-6s6 2 6 6z" fill="#2a9d8f"/></svg>'
)

CSS = """
:root { font-family: system-ui, sans-serif; color: #1d2430; background: #f4f5f7; }
body { margin: 0; }
.top { display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline; justify-content: space-between;
  padding: .6rem 1rem; background: #1d3557; color: #fff; }
.top h1 { font-size: 1.2rem; margin: 0; } .top small { font-weight: normal; opacity: .8; }
.top form { display: inline; } .who { margin: 0; }
#link { font-size: .9rem; } #link.online { color: #7bd88f; } #link.offline { color: #e76f51; }
main { max-width: 70rem; margin: 0 auto; padding: 1rem; }
section { margin-bottom: 1.5rem; } h2 { font-size: 1.05rem; }
.count { background: #1d3557; color: #fff; border-radius: 1rem; padding: 0 .5rem; font-size: .85rem; }
.conv { background: #fff; border-left: 4px solid #aab; border-radius: 4px; padding: .5rem .8rem;
  margin: .6rem 0; box-shadow: 0 1px 2px #0002; }
.conv.waiting { border-color: #e9c46a; } .conv.mine { border-color: #2a9d8f; }
.conv h3 { font-size: 1rem; margin: .2rem 0; } .meta, time { color: #667; font-size: .85rem; }
ol, ul { padding-left: 1.2rem; } .transcript li.member b, .lines li.member b { color: #1d3557; }
.lines li.human b { color: #2a9d8f; }
.reply textarea { width: 100%; box-sizing: border-box; font: inherit; }
button { font: inherit; margin: .2rem .3rem .2rem 0; padding: .25rem .7rem; cursor: pointer; }
#flash { background: #e76f51; color: #fff; padding: .5rem 1rem; margin: 0; }
.login { max-width: 22rem; margin: 4rem auto; background: #fff; padding: 1.5rem; border-radius: 6px; }
.login label { display: block; margin: .6rem 0; } .login input { width: 100%; box-sizing: border-box; }
.error { color: #b00020; } .empty { color: #667; }
"""

JS = """
(function () {
  "use strict";
  var live = document.getElementById("live");
  var link = document.getElementById("link");
  var flash = document.getElementById("flash");
  var brandTitle = document.title;
  var timer = null;

  function say(text) {
    flash.textContent = text;
    flash.hidden = false;
    setTimeout(function () { flash.hidden = true; }, 6000);
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      if (response.status === 401) { location.reload(); }
      if (!response.ok) {
        return response.json().then(function (e) { say(e.message || response.statusText); },
                                    function () { say(response.statusText); })
          .then(function () { return response; });
      }
      return response;
    });
  }

  var generation = 0;  // answers can arrive out of order: only the newest request's is shown

  function refresh() {
    var mine = ++generation;
    var drafts = {};
    var focused = document.activeElement && document.activeElement.getAttribute("data-conv");
    live.querySelectorAll("textarea[data-conv]").forEach(function (t) {
      drafts[t.getAttribute("data-conv")] = t.value;
    });
    return fetch("/desk/partials/live", {credentials: "same-origin"}).then(function (response) {
      if (response.status === 401) { location.reload(); return; }
      return response.text().then(function (html) {
        if (mine !== generation) { return; }
        live.innerHTML = html;
        live.querySelectorAll("textarea[data-conv]").forEach(function (t) {
          var conv = t.getAttribute("data-conv");
          if (drafts[conv]) { t.value = drafts[conv]; }
          if (focused === conv) { t.focus(); }
        });
        var queue = document.getElementById("queue");
        var waiting = queue ? Number(queue.getAttribute("data-waiting")) : 0;
        document.title = (waiting ? "(" + waiting + ") " : "") + brandTitle;
      });
    });
  }

  function soon() {
    if (timer === null) { timer = setTimeout(function () { timer = null; refresh(); }, 150); }
  }

  function act(button) {
    var action = button.getAttribute("data-action");
    var conv = button.getAttribute("data-conv");
    var id = button.getAttribute("data-id");
    var base = "/desk/api/conversations/" + encodeURIComponent(conv || "");
    if (action === "take") { return post(base + "/take"); }
    var callback = "/desk/api/callbacks/" + encodeURIComponent(id || "");
    if (action === "back_to_bot" || action === "closed") {
      return post(base + "/release", {outcome: action});
    }
    if (action === "callback-take") { return post(callback + "/take"); }
    if (action === "callback-done") { return post(callback + "/done"); }
    if (action === "reply") {
      var box = live.querySelector('textarea[data-conv="' + conv + '"]');
      if (!box || !box.value.trim()) { return Promise.resolve(); }
      var text = box.value;
      return post(base + "/reply", {text: text}).then(function (response) {
        if (response.ok) { box.value = ""; }
      });
    }
    return Promise.resolve();
  }

  live.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (button) { act(button).then(refresh); }
  });
  live.addEventListener("keydown", function (event) {
    var box = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && box.matches("textarea[data-conv]")) {
      event.preventDefault();
      var conv = event.target.getAttribute("data-conv");
      var button = live.querySelector('button[data-action="reply"][data-conv="' + conv + '"]');
      if (button) { act(button).then(refresh); }
    }
  });

  function connect(delay) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/desk/api/events");
    socket.onopen = function () { link.className = "online"; delay = 1000; refresh(); };
    socket.onmessage = soon;
    socket.onclose = function () {
      link.className = "offline";
      setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay);
    };
  }
  connect(1000);
})();
"""
