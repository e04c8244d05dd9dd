// choreo console: renders the page named by the path from /ui/api and keeps it live over Server-Sent
// Events. Every value is put into the DOM as text (never as HTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// h builds an element: h("td", {class: "num"}, "12"). Children are nodes or text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}

// s builds an SVG element.
function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, init) {
  const resp = await fetch(path, init);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.detail || body.title || resp.statusText);
  return body;
}

const app = () => document.getElementById("app");
const query = () => new URLSearchParams(location.search);

function render(...nodes) {
  app().replaceChildren(...nodes.flat());
}

function rate(r) {
  if (!r) return "0/s";
  return (r >= 10 ? r.toFixed(0) : r.toFixed(1)) + "/s";
}

function bytes(n) {
  if (n === undefined || n < 0) return "n/a";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function ms(v) {
  if (v === undefined || v < 0) return "–";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v >= 10 ? 0 : 1) + " ms";
}

function ago(seconds) {
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function time(t) { return t ? new Date(t).toISOString().replace("T", " ").replace("Z", " UTC") : ""; }

// live subscribes fn to every snapshot the server streams, after the first one fetched directly.
let stream = null;
function live(fn) {
  api("/ui/api/snapshot").then(fn).catch(showError);
  const badge = document.getElementById("live");
  stream = new EventSource("/ui/api/stream");
  stream.addEventListener("open", () => { badge.textContent = "live"; badge.className = "live on"; });
  stream.addEventListener("error", () => { badge.textContent = "reconnecting"; badge.className = "live off"; });
  stream.addEventListener("snapshot", (e) => fn(JSON.parse(e.data)));
}

function showError(err) {
  const box = document.getElementById("problem") || app().appendChild(h("p", {id: "problem", class: "error"}));
  box.textContent = String(err.message || err);
}

// ---------- Flow ----------

const positions = {
  client: [70, 250], order: [280, 250], inventory: [560, 80], payment: [840, 250],
  shipping: [560, 420], notification: [280, 460], orderview: [840, 460],
};

function flowPage() {
  const graph = h("div", {class: "card grow"}), side = h("div", {class: "grow"});
  render(h("h1", {}, "Flow"), h("p", {class: "muted"},
    "The choreography from sagas.OrderSaga(): services as nodes, event types as edges with their current rate, each consumer group's lag on its node."),
  h("div", {class: "row"}, graph, side));
  live((snap) => {
    graph.replaceChildren(flowGraph(snap.flow));
    side.replaceChildren(outcomes(snap.sagas), edgeTable(snap.flow));
    if (snap.error) showError(snap.error);
  });
}

function flowGraph(flow) {
  const svg = s("svg", {viewBox: "0 0 980 540", width: "100%", role: "img", "aria-label": "event flow between services"});
  svg.append(s("defs", {}, s("marker", {id: "arr", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"},
    s("path", {d: "M0,0 L10,5 L0,10 z", fill: "#44506a"}))));
  const pairs = new Map();
  for (const e of flow.edges || []) {
    const k = e.from + ">" + e.to;
    if (!pairs.has(k)) pairs.set(k, []);
    pairs.get(k).push(e);
  }
  for (const [k, edges] of pairs) {
    const [from, to] = k.split(">");
    const a = positions[from], b = positions[to];
    if (!a || !b) continue;
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1;
    const nx = -dy / len, ny = dx / len, bend = 28;
    const sx = a[0] + dx / len * 62, sy = a[1] + dy / len * 30, ex = b[0] - dx / len * 62, ey = b[1] - dy / len * 30;
    const cx = (sx + ex) / 2 + nx * bend, cy = (sy + ey) / 2 + ny * bend;
    const total = edges.reduce((n, e) => n + e.rate, 0);
    const comp = edges.every((e) => e.kind === "compensation");
    const cls = "edge" + (comp ? " compensation" : "") + (total > 0 ? " active" : "");
    const title = edges.map((e) => `${e.type} (${e.kind}) ${rate(e.rate)}`).join("\n");
    svg.append(s("path", {class: cls, d: `M${sx},${sy} Q${cx},${cy} ${ex},${ey}`, "marker-end": "url(#arr)"}, s("title", {}, title)));
    const lx = (sx + ex) / 2 + nx * bend * 0.9, ly = (sy + ey) / 2 + ny * bend * 0.9;
    const label = s("text", {class: "elabel", x: lx, y: ly - (edges.length - 1) * 6, "text-anchor": "middle"});
    edges.forEach((e, i) => label.append(s("tspan", {x: lx, dy: i ? 12 : 0}, `${e.type} ${rate(e.rate)}`)));
    svg.append(label);
  }
  for (const n of flow.nodes || []) {
    const p = positions[n.name] || [490, 500];
    const g = s("g", {class: "node" + (n.lag > 0 ? " lagging" : ""), "data-node": n.name, transform: `translate(${p[0] - 60},${p[1] - 28})`});
    g.append(s("rect", {width: 120, height: 56, rx: 8}));
    g.append(s("text", {class: "name", x: 60, y: 20, "text-anchor": "middle"}, n.name));
    if (n.name === "client") g.append(s("text", {class: "sub", x: 60, y: 38, "text-anchor": "middle"}, "POST /v1/orders"));
    else {
      g.append(s("text", {class: "sub lag", x: 60, y: 37, "text-anchor": "middle"}, `lag ${n.lag}`));
      g.append(s("text", {class: "sub", x: 60, y: 50, "text-anchor": "middle"}, `${n.state || "no group"} · ${n.members} member${n.members === 1 ? "" : "s"}`));
    }
    svg.append(g);
  }
  return svg;
}

function outcomes(st) {
  const cancelled = Object.entries(st.cancelled || {}).sort();
  const minutes = Math.round((st.window_seconds || 0) / 60);
  return h("div", {class: "card", id: "outcomes"},
    h("h2", {}, `Saga outcomes, last ${minutes} min`),
    h("div", {class: "stats"},
      h("div", {class: "stat ok"}, h("b", {id: "confirmed"}, st.confirmed), h("span", {}, "confirmed")),
      ...cancelled.map(([reason, n]) => h("div", {class: "stat bad", "data-reason": reason}, h("b", {}, n), h("span", {}, "cancelled: " + reason))),
      h("div", {class: "stat"}, h("b", {}, st.in_flight), h("span", {}, "in flight"))),
    h("h2", {}, "POST → final latency"),
    h("table", {id: "latency"}, h("tr", {}, ["sagas", "p50", "p90", "p99", "max"].map((x) => h("th", {class: "num"}, x))),
      h("tr", {}, h("td", {class: "num"}, st.latency_ms.count),
        ["p50", "p90", "p99", "max"].map((q) => h("td", {class: "num"}, st.latency_ms.count ? ms(st.latency_ms[q]) : "–")))));
}

function edgeTable(flow) {
  return h("div", {class: "card"}, h("h2", {}, "Event types"),
    h("table", {id: "edges"}, h("tr", {}, h("th", {}, "from"), h("th", {}, "event"), h("th", {}, "to"), h("th", {}, "kind"), h("th", {class: "num"}, "rate")),
      (flow.edges || []).map((e) => h("tr", {},
        h("td", {}, e.from), h("td", {class: "edge-type mono"}, e.type), h("td", {}, e.to),
        h("td", {}, h("span", {class: "tag " + e.kind}, e.kind)), h("td", {class: "num"}, rate(e.rate))))));
}

// ---------- Topics ----------

function topicsPage() {
  const topics = h("div"), groups = h("div");
  render(h("h1", {}, "Topics"), topics, h("h1", {}, "Consumer groups"), groups);
  live((snap) => {
    topics.replaceChildren(topicTable(snap));
    groups.replaceChildren(groupTable(snap));
  });
}

function topicTable(snap) {
  const rows = [];
  for (const t of snap.topics || []) {
    rows.push(h("tr", {class: "topic", "data-topic": t.name},
      h("td", {class: "mono"}, h("a", {href: "/ui/messages?topic=" + encodeURIComponent(t.name)}, t.name)),
      h("td", {class: "num"}, t.partitions.length), h("td", {class: "num messages"}, t.messages),
      h("td", {class: "num"}, rate(t.rate)), h("td", {class: "num size"}, bytes(t.size)),
      h("td", {}, h("details", {}, h("summary", {}, "offsets"),
        h("table", {}, h("tr", {}, ["partition", "leader", "start", "end", "size"].map((x) => h("th", {class: "num"}, x))),
          t.partitions.map((p) => h("tr", {}, [p.id, p.leader, p.start, p.end, bytes(p.size)].map((v) => h("td", {class: "num"}, v)))))))));
  }
  return h("div", {class: "card"},
    snap.size_note ? h("p", {class: "muted"}, snap.size_note) : null,
    h("table", {id: "topics"}, h("tr", {}, h("th", {}, "topic"), h("th", {class: "num"}, "partitions"), h("th", {class: "num"}, "messages"),
      h("th", {class: "num"}, "messages/s"), h("th", {class: "num"}, "size"), h("th", {}, "start and end offsets")), rows));
}

function groupTable(snap) {
  const rows = [];
  for (const g of snap.groups || []) {
    rows.push(h("tr", {class: "group", "data-group": g.id},
      h("td", {class: "mono"}, g.id), h("td", {class: "state"}, g.state), h("td", {class: "num members"}, (g.members || []).length),
      h("td", {class: "num lag"}, g.lag),
      h("td", {}, h("details", {}, h("summary", {}, "per partition"),
        h("table", {}, h("tr", {}, h("th", {}, "topic"), ["partition", "committed", "end", "lag"].map((x) => h("th", {class: "num"}, x))),
          (g.offsets || []).map((o) => h("tr", {}, h("td", {class: "mono"}, o.topic),
            [o.partition, o.committed < 0 ? "none" : o.committed, o.end, o.lag].map((v) => h("td", {class: "num"}, v)))))))));
  }
  return h("div", {class: "card"}, h("table", {id: "groups"},
    h("tr", {}, h("th", {}, "group"), h("th", {}, "state"), h("th", {class: "num"}, "members"), h("th", {class: "num"}, "lag"), h("th", {}, "")), rows));
}

// ---------- Messages ----------

function messagesPage() {
  const q = query();
  const list = h("div", {id: "messages"}), note = h("p", {class: "muted", id: "note"});
  const topic = h("select", {name: "topic", id: "topic"});
  const field = (name, label, attrs) => h("label", {}, label, h("input", Object.assign({name, value: q.get(name) || ""}, attrs)));
  const tailBtn = h("button", {type: "button", class: "secondary", id: "tail"}, "Tail");
  const form = h("form", {class: "inline card", method: "get", action: "/ui/messages"},
    h("label", {}, "topic", topic), field("partition", "partition", {size: 4}), field("offset", "offset", {size: 8}),
    field("from", "from time (UTC)", {placeholder: "2026-01-02T15:04:05Z", size: 22}), field("key", "key (order id)", {size: 38}),
    h("button", {type: "submit"}, "Show"), tailBtn);
  render(h("h1", {}, "Messages"), form, note, list);
  let tail = null;
  tailBtn.addEventListener("click", () => {
    if (tail) { tail.close(); tail = null; tailBtn.textContent = "Tail"; return; }
    list.replaceChildren();
    note.textContent = "following new messages of " + topic.value + "…";
    tail = new EventSource("/ui/api/tail?topic=" + encodeURIComponent(topic.value));
    tail.addEventListener("message", (e) => list.prepend(messageCard(JSON.parse(e.data))));
    tail.addEventListener("ready", () => { note.textContent = "tailing " + topic.value + ": new messages appear on top"; note.dataset.tailing = "1"; });
    tailBtn.textContent = "Stop";
  });
  api("/ui/api/snapshot").then((snap) => {
    const names = (snap.topics || []).map((t) => t.name);
    const chosen = q.get("topic") || names.find((n) => n.endsWith("order.events")) || names[0];
    topic.replaceChildren(...names.map((n) => h("option", {value: n, selected: n === chosen}, n)));
    if (!chosen) return;
    if (q.get("tail")) { tailBtn.click(); return; }
    const p = new URLSearchParams();
    for (const k of ["topic", "partition", "offset", "from", "key", "before"]) if (q.get(k)) p.set(k, q.get(k));
    p.set("topic", chosen);
    return api("/ui/api/messages?" + p).then((b) => {
      note.textContent = b.note || `${b.messages.length} messages (${b.mode})`;
      list.replaceChildren(...b.messages.map(messageCard));
      if (b.next) list.append(h("a", {href: "/ui/messages?" + b.next}, "next page →"));
    });
  }).catch(showError);
}

const ceOrder = ["type", "id", "source", "subject", "time", "specversion", "schemaversion", "correlationid", "causationid"];

function messageCard(m) {
  const ce = m.event || {};
  const attrs = Object.keys(ce).sort((a, b) => (ceOrder.indexOf(a) + 99) % 99 - (ceOrder.indexOf(b) + 99) % 99);
  const other = (m.headers || []).filter((x) => !x.key.startsWith("ce_"));
  return h("div", {class: "msg", "data-offset": m.offset, "data-partition": m.partition},
    h("div", {class: "meta"}, h("b", {class: "type"}, ce.type || "(not a CloudEvent)"),
      h("span", {}, "key ", h("code", {class: "key"}, m.key)), h("span", {}, `partition ${m.partition}`),
      h("span", {}, `offset ${m.offset}`), h("span", {}, time(m.time))),
    attrs.length ? h("table", {class: "ce"}, attrs.map((a) => h("tr", {}, h("td", {}, "ce_" + a), h("td", {class: "mono"}, ce[a])))) : null,
    other.length ? h("table", {class: "headers"}, other.map((x) => h("tr", {}, h("td", {}, x.key), h("td", {class: "mono"}, x.value)))) : null,
    h("pre", {class: "payload"}, m.payload));
}

// ---------- Dead letters ----------

function deadLettersPage() {
  const body = h("div");
  render(h("h1", {}, "Dead letters"), h("p", {class: "muted"},
    "Each service's dead letters from <topic>.dlq, newest first, with the error and where the message came from."), body);
  const load = () => api("/ui/api/deadletters").then((d) => body.replaceChildren(...d.services.map((s) => serviceLetters(s, d, load)),
    d.note ? h("p", {class: "muted"}, d.note) : "")).catch(showError);
  load();
  let last = -1;
  live((snap) => {
    const n = (snap.topics || []).filter((t) => t.name.endsWith(".dlq")).reduce((a, t) => a + t.messages, 0);
    if (last >= 0 && n !== last) load();
    last = n;
  });
}

// results keeps the outcome of each service's last redrive across the reloads it causes.
const results = {};

function serviceLetters(s, d, reload) {
  const result = h("span", {class: "result " + (results[s.service] || {cls: "muted"}).cls}, (results[s.service] || {}).text || "");
  const token = h("input", {type: "password", name: "token", placeholder: "operator token", autocomplete: "off"});
  const form = h("form", {class: "inline", method: "post", action: `/ui/api/deadletters/${encodeURIComponent(s.service)}/redrive`},
    d.token_required ? token : null, h("button", {type: "submit", disabled: !d.redrive || s.letters.length === 0}, "Redrive"), result);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = new URLSearchParams();
    if (d.token_required) body.set("token", token.value);
    api(form.action, {method: "POST", body}).then((r) => { results[s.service] = {text: `${r.redriven} redriven`, cls: "ok"}; reload(); })
      .catch((err) => { results[s.service] = {text: err.message, cls: "error"}; reload(); });
  });
  return h("section", {class: "card service", "data-service": s.service},
    h("div", {class: "row"}, h("h2", {class: "grow"}, `${s.service} `, h("span", {class: "muted count"}, `${s.letters.length} dead letters`)), form),
    s.letters.length === 0 ? h("p", {class: "muted"}, "none in " + s.topics.join(", ")) :
      h("table", {class: "letters"}, h("tr", {}, ["dead-lettered", "event", "key", "error", "origin", ""].map((x) => h("th", {}, x))),
        s.letters.map((l) => h("tr", {class: "letter"}, h("td", {}, time(l.time)), h("td", {class: "mono"}, (l.event || {}).type || "?"),
          h("td", {class: "mono"}, h("a", {href: "/ui/sagas?id=" + encodeURIComponent(l.key)}, l.key)), h("td", {class: "dlq-error"}, l.error),
          h("td", {class: "mono origin"}, l.origin),
          h("td", {}, h("details", {}, h("summary", {}, "message"), messageCard(l)))))));
}

// ---------- Sagas ----------

function sagasPage() {
  const q = query();
  const id = q.get("id") || "";
  const older = q.get("older") || "30s";
  const one = h("div", {id: "saga"}), stuck = h("div", {id: "stuck"});
  render(h("h1", {}, "Sagas"),
    h("form", {class: "inline card", method: "get", action: "/ui/sagas"},
      h("label", {}, "order id", h("input", {name: "id", value: id, size: 38})),
      h("label", {}, "stuck after", h("input", {name: "older", value: older, size: 6})),
      h("button", {type: "submit"}, "Show")), one, stuck);
  const loadSaga = () => id ? api("/ui/api/sagas/" + encodeURIComponent(id)).then((sg) => { one.replaceChildren(sagaView(sg)); return sg; }) : Promise.resolve(null);
  const loadStuck = () => api("/ui/api/sagas/stuck?older=" + encodeURIComponent(older)).then((l) => stuck.replaceChildren(stuckList(l)));
  loadSaga().catch(showError);
  loadStuck().catch(showError);
  let first = true;
  live(() => {
    if (first) { first = false; return; }
    if (one.querySelector("[data-status=PENDING]")) loadSaga().catch(showError);
    loadStuck().catch(showError);
  });
}

function sagaView(sg) {
  const lanes = sg.lanes, laneH = 64, top = 30, left = 120, colW = 132;
  const width = left + Math.max(sg.events.length, 4) * colW + 20, height = top + lanes.length * laneH + 10;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width: Math.min(width, 1360), role: "img", "aria-label": "the saga as swimlanes"});
  svg.append(s("defs", {}, s("marker", {id: "sarr", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"},
    s("path", {d: "M0,0 L10,5 L0,10 z", fill: "#44506a"}))));
  lanes.forEach((l, i) => {
    svg.append(s("rect", {class: "lane", x: 0, y: top + i * laneH, width, height: laneH}));
    svg.append(s("text", {class: "lanename", x: 10, y: top + i * laneH + laneH / 2 + 4}, l));
  });
  const at = new Map();
  sg.events.forEach((e, i) => {
    const lane = Math.max(0, lanes.indexOf(e.source));
    at.set(e.id, [left + i * colW, top + lane * laneH + 10]);
  });
  for (const e of sg.events) {
    const cause = at.get(e.causation), me = at.get(e.id);
    if (!cause) continue;
    const [x1, y1] = [cause[0] + 118, cause[1] + 22], [x2, y2] = [me[0], me[1] + 22];
    svg.append(s("path", {class: "arrow", d: `M${x1},${y1} C${x1 + 20},${y1} ${x2 - 20},${y2} ${x2 - 2},${y2}`, "marker-end": "url(#sarr)"}));
  }
  const t0 = sg.events.length ? new Date(sg.events[0].at).getTime() : 0;
  for (const e of sg.events) {
    const [x, y] = at.get(e.id);
    const g = s("g", {class: "ev " + e.kind, "data-type": e.type, transform: `translate(${x},${y})`});
    g.append(s("rect", {width: 118, height: 44, rx: 6}), s("title", {}, `${e.type} by ${e.source} at ${time(e.at)}`));
    g.append(s("text", {x: 6, y: 17}, e.type));
    g.append(s("text", {class: "hop", x: 6, y: 34}, e.hop_ms >= 0 ? `+${ms(e.hop_ms)} hop` : `t0 ${time(e.at).slice(11, 23)}`));
    svg.append(g);
  }
  return h("div", {},
    h("div", {class: "card"}, h("h2", {}, "Order ", h("code", {}, sg.id), " ",
      h("span", {class: "tag " + sg.status, id: "status", "data-status": sg.status}, sg.status + (sg.reason ? ": " + sg.reason : ""))),
    sg.expected.length ? h("div", {id: "expected"}, h("h2", {}, "Waiting for"), h("ul", {}, sg.expected.map((x) =>
      h("li", {class: "expect", "data-service": x.service}, h("b", {}, x.service), ` to ${x.action} (after ${x.after}; emits ${x.emits.join(" or ")}), waiting ${ago(x.waited_seconds)}`)))) : null,
    h("div", {style: null, class: "lanes"}, svg)),
    h("div", {class: "card"}, h("table", {id: "events"}, h("tr", {}, ["time", "+t", "service", "event", "kind", "hop", "caused by"].map((x) => h("th", {}, x))),
      sg.events.map((e) => h("tr", {class: "event " + e.kind, "data-type": e.type},
        h("td", {}, time(e.at)), h("td", {class: "num"}, ms(new Date(e.at).getTime() - t0)), h("td", {}, e.source),
        h("td", {class: "mono"}, e.type), h("td", {}, h("span", {class: "tag " + e.kind}, e.kind)),
        h("td", {class: "num"}, ms(e.hop_ms)), h("td", {class: "mono"}, (sg.events.find((c) => c.id === e.causation) || {}).type || "")))),
    (sg.notes || []).map((n) => h("p", {class: "muted"}, n))));
}

function stuckList(l) {
  return h("div", {class: "card"}, h("h2", {}, `Stuck sagas: PENDING longer than ${ago(l.older_than_seconds)}`),
    l.note ? h("p", {class: "muted"}, l.note) : null,
    l.sagas.length === 0 ? h("p", {class: "muted none"}, "none") :
      h("table", {id: "stuck-list"}, h("tr", {}, h("th", {}, "order"), h("th", {}, "customer"), h("th", {}, "placed"), h("th", {class: "num"}, "pending for")),
        l.sagas.map((x) => h("tr", {class: "stuck", "data-id": x.id},
          h("td", {class: "mono"}, h("a", {href: "/ui/sagas?id=" + encodeURIComponent(x.id)}, x.id)), h("td", {}, x.customer_id),
          h("td", {}, time(x.created_at)), h("td", {class: "num"}, ago(x.pending_seconds))))),
    l.truncated ? h("p", {class: "muted"}, "more PENDING orders than were looked through") : null);
}

// ---------- start ----------

const routes = {flow: flowPage, topics: topicsPage, messages: messagesPage, deadletters: deadLettersPage, sagas: sagasPage};
const page = location.pathname.replace(/^\/ui\/?/, "").split("/")[0] || "flow";
for (const a of document.querySelectorAll("nav a")) if (a.dataset.page === page) a.classList.add("active");
(routes[page] || flowPage)();
