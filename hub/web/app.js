// Foyer household web app: plain ES modules, no build step, every asset served by the hub.
// Text from the network is only ever set with textContent (never innerHTML).

const TEXT = {
  fr: {
    loading: "Chargement…", tab_talk: "Conversations", tab_brands: "Marques", tab_inbox: "Boîte de réception",
    tab_stats: "Service", pair_title: "Appairer cet appareil",
    pair_help: "Sur le hub, lancez « foyer pair » (ou demandez un code à un administrateur), puis saisissez-le ici.",
    pair_code: "Code d'appairage", pair_name: "Nom de cet appareil", pair_go: "Appairer",
    new_conv: "Nouvelle conversation", your_message: "Votre message", send: "Envoyer",
    human: "Parler à un humain", close: "Clore la conversation", choose_brand: "Choisissez une marque :",
    no_conv: "Choisissez une conversation, ou écrivez à une de vos marques.", me: "Vous",
    yes_human: "Oui, un conseiller", callback: "Être rappelé·e", rate_bot: "L'assistant", rate_human: "Le conseiller",
    rate_comment: "Commentaire (facultatif)", rate_send: "Envoyer mon avis", rated: "Votre avis :",
    opt_in: "Choisir cette marque", opt_out: "Ne plus parler à cette marque", online: "en ligne",
    offline: "hors ligne", opted: "choisie", asks: "Ce qu'elle demande, et pourquoi :", keys: "Empreinte des clés",
    share: "Partager mes avis de satisfaction avec cette marque", humans: "Conseillers", none: "aucun",
    contact: "Autres moyens de contact", inbox_empty: "Aucune notification.", stats_empty: "Pas encore de conversation.",
    first_response: "1re réponse (s)", to_human: "Délai pour un humain (s)", satisfaction: "Satisfaction (/5)",
    needed_human: "Besoin d'un humain", conversations: "Conversations", brand: "Marque",
    status_queued: "en attente", status_accepted: "accepté", status_sent: "envoyé", status_delivered: "remis",
    status_failed: "refusé", status_cancelled: "annulé", error: "Erreur", admin_only: "Réservé aux administrateurs.",
    bot: "assistant", person: "conseiller·e", grant: "J'accepte de partager", knows: "Ce qu'elle sait de nous",
    ledger_empty: "Rien ne lui a été transmis.", when: "Quand", what: "Quoi", value: "Donnée", basis: "Au titre de",
    export: "Tout exporter (JSON)", erase: "Effacer cette marque et lui demander d'oublier",
    forget_pending: "Demande d'oubli envoyée, en attente de sa confirmation…", forget_done: "La marque a confirmé avoir oublié.",
    ledger_ok: "Registre intact", ledger_bad: "Registre altéré !", masked: "Masqué avant l'envoi :", back: "Retour",
    erased: "(effacé)", counts: "Ce mois-ci", data_value: "La donnée à partager", data_once: "Une fois",
    data_always: "Toujours", data_no: "Non", categories: "Messages qu'elle peut m'envoyer",
    cat_transactional: "suivi de mes commandes et comptes", cat_service: "informations de service",
    cat_marketing: "publicité", quiet: "Heures calmes", quiet_from: "de", quiet_to: "à", save: "Enregistrer",
    saved: "enregistré", new_keys: "Cette marque annonce de nouvelles clés. Vérifiez l'empreinte auprès d'elle :",
    approve_keys: "Approuver les nouvelles clés", consent_receipt: "votre consentement, reçu n°",
  },
  en: {
    loading: "Loading…", tab_talk: "Conversations", tab_brands: "Brands", tab_inbox: "Inbox", tab_stats: "Service",
    pair_title: "Pair this device",
    pair_help: "On the hub, run “foyer pair” (or ask an admin for a code), then type it here.",
    pair_code: "Pairing code", pair_name: "This device's name", pair_go: "Pair",
    new_conv: "New conversation", your_message: "Your message", send: "Send", human: "Talk to a person",
    close: "Close the conversation", choose_brand: "Choose a brand:",
    no_conv: "Pick a conversation, or write to one of your brands.", me: "You",
    yes_human: "Yes, a person", callback: "Call me back", rate_bot: "The assistant", rate_human: "The person",
    rate_comment: "Comment (optional)", rate_send: "Send my rating", rated: "Your rating:",
    opt_in: "Choose this brand", opt_out: "Stop talking to this brand", online: "online", offline: "offline",
    opted: "chosen", asks: "What it asks for, and why:", keys: "Key fingerprint",
    share: "Share my satisfaction ratings with this brand", humans: "People", none: "none",
    contact: "Other ways to reach them", inbox_empty: "No notifications.", stats_empty: "No conversation yet.",
    first_response: "First response (s)", to_human: "Time to a person (s)", satisfaction: "Satisfaction (/5)",
    needed_human: "Needed a person", conversations: "Conversations", brand: "Brand",
    status_queued: "queued", status_accepted: "accepted", status_sent: "sent", status_delivered: "delivered",
    status_failed: "refused", status_cancelled: "cancelled", error: "Error", admin_only: "Admins only.",
    bot: "assistant", person: "agent", grant: "I agree to share", knows: "What it knows about us",
    ledger_empty: "Nothing was disclosed to it.", when: "When", what: "What", value: "Datum", basis: "Under",
    export: "Export everything (JSON)", erase: "Erase this brand and ask it to forget us",
    forget_pending: "Forget request sent, waiting for its confirmation…", forget_done: "The brand confirmed it forgot.",
    ledger_ok: "Ledger intact", ledger_bad: "Ledger tampered!", masked: "Masked before sending:", back: "Back",
    erased: "(erased)", counts: "This month", data_value: "The datum to share", data_once: "Once",
    data_always: "Always", data_no: "No", categories: "Messages it may send me",
    cat_transactional: "my orders and accounts", cat_service: "service news", cat_marketing: "advertising",
    quiet: "Quiet hours", quiet_from: "from", quiet_to: "to", save: "Save", saved: "saved",
    new_keys: "This brand announces new keys. Check the fingerprint with it:", approve_keys: "Approve the new keys",
    consent_receipt: "your consent, receipt no.",
  },
};

const state = {
  lang: localStorage.getItem("foyer-lang") || "fr", me: null, tab: "talk", brands: [], conversations: [],
  current: null, messages: new Map(), lastSeq: 0, pending: null, notice: null, socket: null,
};

const t = (key) => TEXT[state.lang][key] ?? key;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    ...options,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(body.message || response.statusText), { status: response.status, body });
  return body;
}

function app() { return document.getElementById("app"); }

function show(...nodes) { app().replaceChildren(...nodes); }

function applyStaticText() {
  document.documentElement.lang = state.lang;
  document.getElementById("lang").textContent = state.lang === "fr" ? "EN" : "FR";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-tab]")) {
    node.setAttribute("aria-current", node.dataset.tab === state.tab ? "page" : "false");
  }
}

// --- pairing ------------------------------------------------------------------------------

function showPairing(message) {
  document.getElementById("tabs").hidden = true;
  const code = el("input", { id: "pair-code", name: "code", required: true, autocomplete: "one-time-code" });
  const name = el("input", { id: "pair-name", name: "name", required: true, value: navigator.platform || "navigateur" });
  const error = el("p", { class: "notice", role: "alert" }, message || "");
  const form = el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api("/api/pair", { method: "POST", body: { code: code.value, name: name.value } });
      await start();
    } catch (err) { error.textContent = err.message; }
  } },
  el("h2", {}, t("pair_title")), el("p", { class: "muted" }, t("pair_help")),
  el("label", { for: "pair-code" }, t("pair_code")), code,
  el("label", { for: "pair-name" }, t("pair_name")), name,
  el("div", { class: "actions" }, el("button", { class: "primary", type: "submit" }, t("pair_go"))), error);
  show(form);
  code.focus();
}

// --- data ---------------------------------------------------------------------------------

async function refresh() {
  [state.brands, state.conversations] = await Promise.all([api("/api/brands"), api("/api/conversations")]);
}

function brandName(id) { return state.brands.find((b) => b.id === id)?.name ?? id; }

async function openConversation(id) {
  const data = await api(`/api/conversations/${id}`);
  state.current = data;
  state.messages.set(id, data.messages);
  state.notice = null;
  render();
}

function connect() {
  if (state.socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/events?since=${state.lastSeq}`);
  state.socket = socket;
  socket.onmessage = async (event) => {
    const data = JSON.parse(event.data);
    if (data.event === "message") {
      state.lastSeq = Math.max(state.lastSeq, data.data.seq);
      const list = state.messages.get(data.data.conversation_id);
      if (list) {
        const at = list.findIndex((m) => m.id === data.data.id);
        if (at >= 0) list[at] = data.data; else list.push(data.data);
      }
      if (state.current && state.current.id === data.data.conversation_id && data.data.type === "notice") {
        state.current = await api(`/api/conversations/${state.current.id}`);
        state.messages.set(state.current.id, state.current.messages);
      }
      if (state.tab === "talk") renderTalk();
    } else if (data.event === "brand") {
      state.brands = await api("/api/brands");
      if (state.tab === "brands") renderBrands();
    }
  };
  socket.onclose = () => { state.socket = null; setTimeout(connect, 1000); };
}

// --- talk ---------------------------------------------------------------------------------

function who(message) {
  if (message.direction === "out") return t("me");
  if (message.author_kind === "hub") return "Foyer";
  const role = message.author_kind === "human" ? t("person") : t("bot");
  return `${message.author_name || brandName(message.brand_id)} · ${role}`;
}

function messageItem(message) {
  const kind = message.direction === "out" ? "out" : message.author_kind === "human" ? "human"
    : message.author_kind === "hub" ? "hub" : "bot";
  const item = el("li", { class: `msg ${kind}`, "data-type": message.type, "data-kind": message.extra?.kind || "" },
    el("span", { class: "who" }, who(message)), message.text);
  if (message.direction === "out") item.append(el("span", { class: "status" }, ` · ${t(`status_${message.status}`)}`));
  if (message.extra?.masked?.length) {
    item.append(el("span", { class: "status masked" }, ` · ${t("masked")} ${message.extra.masked.map((m) => m.kind).join(", ")}`));
  }
  const kindOfNote = message.extra?.kind;
  const open = state.current && state.current.conversation?.state !== "closed";
  if (kindOfNote === "offer_human" && open) {
    item.append(el("div", { class: "actions" }, el("button", { class: "secondary", type: "button",
      onclick: () => askHuman(true) }, t("yes_human"))));
  }
  if (kindOfNote === "human_unavailable") {
    item.append(el("div", { class: "actions" }, el("button", { class: "secondary", type: "button",
      onclick: callback }, t("callback"))));
  }
  if (kindOfNote === "rating_prompt") item.append(ratingWidget(message.extra.parts || ["bot"]));
  if (kindOfNote === "data_request") item.append(dataRequestForm(message.extra));
  return item;
}

function dataRequestForm(extra) {
  const value = el("input", { "aria-label": t("data_value"), placeholder: t("data_value"), "data-request": extra.request });
  const answer = async (choice) => {
    try {
      await api(`/api/data-requests/${extra.request}`, { method: "POST",
        body: { answer: choice, value: choice === "no" ? null : value.value, lang: state.lang } });
      await openConversation(state.current.id);
    } catch (err) { state.notice = err.message; renderTalk(); }
  };
  return el("div", { class: "actions" }, value,
    el("button", { class: "secondary", type: "button", onclick: () => answer("once") }, t("data_once")),
    el("button", { class: "secondary", type: "button", onclick: () => answer("always") }, t("data_always")),
    el("button", { class: "secondary", type: "button", onclick: () => answer("no") }, t("data_no")));
}

function ratingWidget(parts) {
  if (state.current?.rating) {
    const r = state.current.rating;
    return el("p", { class: "rated" }, `${t("rated")} ${[r.rating_bot, r.rating_human].filter(Boolean).join(" / ")} ★`);
  }
  const chosen = {};
  const form = el("form", { class: "rating", onsubmit: async (event) => {
    event.preventDefault();
    await api(`/api/conversations/${state.current.id}/rating`, { method: "POST", body: {
      rating_bot: chosen.bot ?? null, rating_human: chosen.human ?? null,
      comment: comment.value || null, lang: state.lang } });
    await openConversation(state.current.id);
  } });
  for (const part of parts) {
    const group = el("div", { class: "stars", role: "group", "aria-label": t(`rate_${part}`) });
    for (let n = 1; n <= 5; n += 1) {
      group.append(el("button", { type: "button", "aria-pressed": "false", "aria-label": `${n}/5`, "data-part": part,
        "data-value": String(n), onclick: () => {
          chosen[part] = n;
          for (const star of group.children) star.setAttribute("aria-pressed", Number(star.dataset.value) <= n ? "true" : "false");
        } }, "★"));
    }
    form.append(el("span", {}, `${t(`rate_${part}`)} `), group, el("br"));
  }
  const comment = el("input", { id: "rating-comment", "aria-label": t("rate_comment"), placeholder: t("rate_comment") });
  form.append(comment, el("div", { class: "actions" }, el("button", { class: "primary", type: "submit" }, t("rate_send"))));
  return form;
}

async function send(text, brand) {
  const body = { text, lang: state.lang };
  if (state.current) body.conversation = state.current.id; else if (brand) body.brand = brand;
  try {
    const result = await api("/api/messages", { method: "POST", body });
    state.pending = null;
    state.notice = result.notice;
    await refresh();
    await openConversation(result.conversation);
    state.notice = result.notice;
    renderTalk();
  } catch (err) {
    if (err.body?.error === "ambiguous_brand") {
      state.pending = { text, question: err.message, candidates: err.body.candidates };
      renderTalk();
    } else {
      state.notice = err.message;
      renderTalk();
    }
  }
}

async function askHuman(acceptOffer = false) {
  await api(`/api/conversations/${state.current.id}/handoff`, { method: "POST",
    body: { accept_offer: acceptOffer, lang: state.lang } });
  await openConversation(state.current.id);
}

async function callback() {
  await api(`/api/conversations/${state.current.id}/callback`, { method: "POST", body: { lang: state.lang } });
  await openConversation(state.current.id);
}

async function closeConversation() {
  await api(`/api/conversations/${state.current.id}/close`, { method: "POST", body: { lang: state.lang } });
  await openConversation(state.current.id);
}

function renderTalk() {
  const list = el("ul", { class: "convlist", "aria-label": t("conversations") });
  list.append(el("li", {}, el("button", { type: "button", onclick: () => { state.current = null; render(); } },
    `+ ${t("new_conv")}`)));
  for (const conversation of state.conversations.filter((c) => c.kind === "chat")) {
    list.append(el("li", {}, el("button", { type: "button", "aria-current": String(state.current?.id === conversation.id),
      onclick: () => openConversation(conversation.id) },
    el("strong", {}, brandName(conversation.brand_id)), el("br"), el("span", { class: "muted" }, conversation.last_text || ""))));
  }
  const pane = el("section", { class: "card", "aria-label": t("tab_talk") });
  if (state.current) {
    pane.append(el("h2", {}, brandName(state.current.brand)));
    const messages = el("ol", { class: "messages", id: "messages" });
    for (const message of state.messages.get(state.current.id) || []) messages.append(messageItem(message));
    pane.append(messages);
  } else {
    pane.append(el("p", { class: "muted" }, t("no_conv")));
  }
  if (state.notice) pane.append(el("p", { class: "notice", role: "status" }, state.notice));
  if (state.pending) {
    const choices = el("div", { class: "actions" });
    for (const id of state.pending.candidates) {
      choices.append(el("button", { class: "secondary", type: "button", onclick: () => send(state.pending.text, id) }, brandName(id)));
    }
    pane.append(el("p", { role: "status" }, state.pending.question), choices);
  }
  const closed = state.current?.conversation?.state === "closed";
  if (!closed) {
    const input = el("input", { id: "composer", "aria-label": t("your_message"), placeholder: t("your_message"), autocomplete: "off" });
    pane.append(el("form", { class: "composer", onsubmit: (event) => {
      event.preventDefault();
      if (input.value.trim()) send(input.value.trim());
      input.value = "";
    } }, input, el("button", { class: "primary", type: "submit" }, t("send"))));
    if (state.current) {
      pane.append(el("div", { class: "actions" },
        el("button", { class: "secondary", type: "button", id: "ask-human", onclick: () => askHuman(false) }, t("human")),
        el("button", { class: "secondary", type: "button", onclick: closeConversation }, t("close"))));
    }
  }
  show(el("div", { class: "talk" }, el("aside", {}, list), pane));
  document.getElementById("messages")?.lastElementChild?.scrollIntoView({ block: "nearest" });
}

// --- brands ---------------------------------------------------------------------------------

function renderBrands() {
  const cards = state.brands.map((brand) => {
    const m = brand.manifest;
    const admin = state.me?.role === "admin";
    const boxes = {};
    const scopes = el("ul", { class: "scopes" }, m.scopes.map((s) => {
      const id = `scope-${brand.id}-${s.scope}`;
      boxes[s.scope] = el("input", { type: "checkbox", id, checked: !brand.opted_in && s.required, disabled: brand.opted_in || !admin });
      return el("li", {}, el("label", { for: id }, boxes[s.scope], " ", el("strong", {}, s.scope), ` — ${s.purpose[state.lang]}`));
    }));
    const hours = Object.entries(m.humans.hours || {}).map(([day, spans]) => `${day} ${spans.join(", ")}`).join(" · ");
    const contacts = m.contact.map((c) => `${c.label ? c.label[state.lang] : c.kind} ${c.value}`).join(" · ");
    const toggle = el("button", { class: brand.opted_in ? "secondary" : "primary", type: "button", disabled: !admin,
      onclick: async () => {
        const grant = Object.keys(boxes).filter((k) => boxes[k].checked);
        const deny = Object.keys(boxes).filter((k) => !boxes[k].checked);
        await api(`/api/brands/${brand.id}/${brand.opted_in ? "opt-out" : "opt-in"}`, { method: "POST",
          body: brand.opted_in ? undefined : { grant, deny } });
        state.brands = await api("/api/brands");
        renderBrands();
      } }, brand.opted_in ? t("opt_out") : t("opt_in"));
    const knows = el("button", { class: "secondary", type: "button", onclick: () => renderKnows(brand.id) }, t("knows"));
    const categories = el("fieldset", { "data-categories": brand.id }, el("legend", {}, t("categories")));
    if (brand.opted_in) {
      api(`/api/brands/${brand.id}/categories`).then(({ allowed }) => {
        for (const [category, on] of Object.entries(allowed)) {
          const id = `cat-${brand.id}-${category}`;
          categories.append(el("label", { for: id }, el("input", { type: "checkbox", id, checked: on, disabled: !admin,
            onchange: (event) => api(`/api/brands/${brand.id}/categories`, { method: "POST",
              body: { category, allowed: event.target.checked } }) }), ` ${t(`cat_${category}`)}`));
        }
      });
    }
    const share = el("input", { type: "checkbox", id: `share-${brand.id}`, checked: brand.share_satisfaction, disabled: !admin,
      onchange: async (event) => {
        await api(`/api/brands/${brand.id}/settings`, { method: "POST", body: { share_satisfaction: event.target.checked } });
      } });
    return el("article", { class: "card", "data-brand": brand.id },
      el("h2", {}, m.name, " ", el("span", { class: `badge ${brand.online ? "online" : "offline"}` }, brand.online ? t("online") : t("offline")),
        brand.opted_in ? el("span", { class: "badge" }, ` ✔ ${t("opted")}`) : null),
      el("p", {}, m.description[state.lang]),
      el("p", {}, t("asks")), scopes,
      el("p", { class: "muted" }, `${t("humans")} : ${m.humans.available ? hours : t("none")}`),
      contacts ? el("p", { class: "muted" }, `${t("contact")} : ${contacts}`) : null,
      brand.keys ? el("p", { class: "muted" }, `${t("keys")} : ${brand.keys}`) : null,
      brand.pending_keys ? el("div", { class: "notice", role: "alert" }, `⚠ ${t("new_keys")} ${brand.pending_keys}`,
        admin ? el("button", { class: "secondary", type: "button", onclick: async () => {
          await api(`/api/brands/${brand.id}/approve-keys`, { method: "POST" });
          state.brands = await api("/api/brands");
          renderBrands();
        } }, t("approve_keys")) : null) : null,
      el("label", { for: `share-${brand.id}` }, share, ` ${t("share")}`),
      brand.opted_in ? categories : null,
      el("p", { class: "muted" }, t("grant")),
      el("div", { class: "actions" }, toggle, knows), admin ? null : el("p", { class: "muted" }, t("admin_only")));
  });
  show(...cards);
}

async function renderKnows(brandId) {
  const [knows, verify] = await Promise.all([api(`/api/brands/${brandId}/knows`), api("/api/ledger/verify")]);
  const rows = knows.entries.filter((e) => e.op === "disclose");
  const table = rows.length ? el("table", { id: "ledger" }, el("thead", {}, el("tr", {}, [t("when"), t("what"), t("value"), t("basis")]
    .map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows.map((e) => el("tr", {},
    el("td", {}, new Date(e.ts).toLocaleString(state.lang)), el("td", {}, e.scope),
    el("td", {}, e.value ?? t("erased")),
    el("td", { title: e.basis }, e.basis === "once" ? t("data_once") : `${t("consent_receipt")} ${e.basis.slice(-6)}`)))))
    : el("p", { class: "muted" }, t("ledger_empty"));
  const forget = knows.forget?.request ? el("p", { role: "status", id: "forget-status" },
    knows.forget.forgotten_at ? t("forget_done") : t("forget_pending")) : null;
  const erase = state.me?.role === "admin" && !knows.forget?.request ? el("button", { class: "secondary", type: "button",
    onclick: async () => { await api(`/api/brands/${brandId}/erase`, { method: "POST" }); renderKnows(brandId); } }, t("erase")) : null;
  show(el("section", { class: "card", "aria-label": t("knows") },
    el("h2", {}, `${brandName(brandId)} — ${t("knows")}`), table,
    el("p", { class: verify.ok ? "muted" : "notice" }, verify.ok ? `✔ ${t("ledger_ok")}` : `✖ ${t("ledger_bad")}`),
    forget,
    el("div", { class: "actions" },
      el("a", { class: "secondary", href: "/api/export", download: "foyer-export.json", id: "export" }, t("export")), erase,
      el("button", { class: "secondary", type: "button", onclick: () => renderBrands() }, t("back")))));
}

// --- inbox and stats ------------------------------------------------------------------------

function quietHoursForm(current) {
  const [from, to] = (current || "22:00-07:30").split("-");
  const start = el("input", { type: "time", id: "quiet-from", value: from });
  const end = el("input", { type: "time", id: "quiet-to", value: to });
  const saved = el("span", { role: "status", class: "muted" });
  return el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    await api("/api/quiet-hours", { method: "PUT", body: { hours: `${start.value}-${end.value}` } });
    saved.textContent = ` ✔ ${t("saved")}`;
  } }, el("h2", {}, t("quiet")), el("label", { for: "quiet-from" }, t("quiet_from"), " ", start),
  el("label", { for: "quiet-to" }, t("quiet_to"), " ", end),
  el("div", { class: "actions" }, el("button", { class: "secondary", type: "submit" }, t("save")), saved));
}

async function renderInbox() {
  const notes = await api("/api/notifications");
  const quiet = quietHoursForm((await api("/api/quiet-hours")).hours);
  const counts = await Promise.all(state.brands.filter((b) => b.opted_in)
    .map((b) => api(`/api/brands/${b.id}/notification-counts?lang=${state.lang}`)));
  const sentences = counts.flatMap((c) => c.sentences);
  const summary = sentences.length ? el("div", { class: "card" }, el("h2", {}, t("counts")),
    el("ul", {}, sentences.map((x) => el("li", {}, x)))) : null;
  if (!notes.length) { show(...[summary, el("p", { class: "muted" }, t("inbox_empty")), quiet].filter(Boolean)); return; }
  show(...[summary, quiet, el("ul", { class: "messages" }, notes.map((n) => el("li", { class: "msg bot" },
    el("span", { class: "who" }, `${brandName(n.brand_id)} · ${n.extra.category} · ${n.status}`), n.text)))].filter(Boolean));
}

function bars(title, rows, value, max) {
  const height = 28 * rows.length + 10;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 400 ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  rows.forEach((row, i) => {
    const v = value(row);
    const width = v === null ? 0 : Math.max(2, (v / (max || 1)) * 250);
    const y = 5 + i * 28;
    const label = document.createElementNS(svg.namespaceURI, "text");
    label.setAttribute("x", "0"); label.setAttribute("y", String(y + 16)); label.textContent = row.name;
    const bar = document.createElementNS(svg.namespaceURI, "rect");
    bar.setAttribute("x", "120"); bar.setAttribute("y", String(y)); bar.setAttribute("width", String(width));
    bar.setAttribute("height", "20"); bar.setAttribute("fill", "#0b5f8a");
    const number = document.createElementNS(svg.namespaceURI, "text");
    number.setAttribute("x", String(126 + width)); number.setAttribute("y", String(y + 16));
    number.textContent = v === null ? "—" : String(Math.round(v * 10) / 10);
    svg.append(label, bar, number);
  });
  return el("figure", { class: "card chart" }, el("figcaption", {}, title), svg);
}

async function renderStats() {
  const rows = await api("/api/stats");
  if (!rows.length) { show(el("p", { class: "muted" }, t("stats_empty"))); return; }
  const s = (ms) => (ms === null ? null : ms / 1000);
  const table = el("table", {}, el("thead", {}, el("tr", {}, [t("brand"), t("conversations"), t("first_response"), t("to_human"),
    t("satisfaction"), t("needed_human")].map((h) => el("th", { scope: "col" }, h)))),
  el("tbody", {}, rows.map((r) => el("tr", {}, el("td", {}, r.name), el("td", {}, String(r.conversations)),
    el("td", {}, s(r.first_response_ms)?.toFixed(1) ?? "—"), el("td", {}, s(r.time_to_human_ms)?.toFixed(1) ?? "—"),
    el("td", {}, r.satisfaction === null ? "—" : String(r.satisfaction)), el("td", {}, `${Math.round(r.needed_human * 100)} %`)))));
  const maxFirst = Math.max(...rows.map((r) => s(r.first_response_ms) ?? 0));
  const maxHuman = Math.max(...rows.map((r) => s(r.time_to_human_ms) ?? 0));
  show(el("div", { class: "card" }, table),
    bars(t("first_response"), rows, (r) => s(r.first_response_ms), maxFirst),
    bars(t("to_human"), rows, (r) => s(r.time_to_human_ms), maxHuman),
    bars(t("satisfaction"), rows, (r) => r.satisfaction, 5));
}

// --- shell ----------------------------------------------------------------------------------

function render() {
  applyStaticText();
  if (state.tab === "talk") renderTalk();
  else if (state.tab === "brands") renderBrands();
  else if (state.tab === "inbox") renderInbox();
  else renderStats();
}

async function start() {
  try {
    state.me = await api("/api/me");
  } catch (err) {
    applyStaticText();
    showPairing(err.status === 401 ? "" : err.message);
    return;
  }
  document.getElementById("tabs").hidden = false;
  const changes = await api("/api/changes?since=0");
  state.lastSeq = changes.head_seq;
  await refresh();
  connect();
  render();
}

document.getElementById("lang").addEventListener("click", () => {
  state.lang = state.lang === "fr" ? "en" : "fr";
  localStorage.setItem("foyer-lang", state.lang);
  if (state.me) render(); else { applyStaticText(); showPairing(); }
});
for (const button of document.querySelectorAll("[data-tab]")) {
  button.addEventListener("click", async () => {
    state.tab = button.dataset.tab;
    if (state.tab === "talk") await refresh();
    render();
  });
}
start();
