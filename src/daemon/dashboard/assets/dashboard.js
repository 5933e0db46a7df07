// steward's dashboard: polls the daemon's JSON and renders it. Everything from the
// server goes into the page as text nodes (never innerHTML), so a client name or an
// error message can never become markup.
"use strict";

const POLL_MS = 2000;
const PHASES = ["Error", "Failed", "Holding", "RateLimited", "Pending", "Converged"];

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function replace(target, ...children) {
  const node = typeof target === "string" ? document.getElementById(target) : target;
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

const short = (sha) => (sha ? String(sha).slice(0, 12) : "—");
const dash = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

function badge(phase) {
  return el("span", { class: `badge phase-${phase}` }, phase);
}

function code(desired, tag, live) {
  const out = [el("span", { class: "mono" }, short(live))];
  if (tag) out.push(" ", el("span", { class: "tag" }, tag));
  if (desired && desired !== live) out.push(el("span", { class: "muted" }, " → ", el("span", { class: "mono" }, short(desired))));
  return out;
}

function windowText(window) {
  if (!window) return "any time";
  if (window.open) return "open now";
  return window.nextOpenLocal || "none in the coming week";
}

function problem(text) {
  const node = document.getElementById("problem");
  node.hidden = !text;
  node.textContent = text || "";
}

async function poll(url, render) {
  try {
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    render(body);
    problem(null);
    document.getElementById("updated").textContent = `updated ${when(new Date().toISOString())}`;
  } catch (err) {
    problem(`cannot refresh: ${err.message}; retrying`);
  } finally {
    setTimeout(() => poll(url, render), POLL_MS);
  }
}

// ---- the fleet page -------------------------------------------------------------------

function fillSelect(id, values) {
  const select = document.getElementById(id);
  const chosen = select.value;
  const have = Array.from(select.options).map((o) => o.value).slice(1);
  if (have.join("\n") === values.join("\n")) return;
  replace(select, el("option", { value: "" }, "any"), values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(chosen) ? chosen : "";
}

function waveRow(wave) {
  const pct = (n) => `${wave.total ? (100 * n) / wave.total : 0}%`;
  const other = wave.total - wave.converged - wave.attention;
  const parts = Object.entries(wave.counts).map(([phase, n]) => `${n} ${phase.toLowerCase()}`);
  return el("div", { class: "wave" },
    el("b", {}, wave.name),
    el("div", { class: "bar", title: `${wave.converged} of ${wave.total} converged` },
      el("span", { class: "ok", style: `width:${pct(wave.converged)}` }),
      el("span", { class: "bad", style: `width:${pct(wave.attention)}` }),
      el("span", { class: "other", style: `width:${pct(other)}` })),
    el("span", {}, `${wave.converged}/${wave.total} converged`, el("span", { class: "muted" }, ` · ${parts.join(", ")}`)));
}

function clientRow(c) {
  const link = el("a", { href: `/clients/${encodeURIComponent(c.name)}` }, c.name);
  const schema = [el("span", { class: "mono" }, dash(c.schema.live))];
  if (c.schema.desired && c.schema.desired !== c.schema.live) {
    schema.push(el("span", { class: "muted" }, " → ", el("span", { class: "mono" }, c.schema.desired)));
  }
  const now = c.stage ? el("span", {}, el("b", {}, "running: "), c.stage) : dash(c.reason);
  return el("tr", { class: c.attention ? "attention" : null, "data-client": c.name },
    el("td", {}, link),
    el("td", {}, dash(c.wave)),
    el("td", {}, badge(c.phase)),
    el("td", {}, code(c.code.desired, c.code.tag, c.code.live)),
    el("td", {}, schema),
    el("td", {}, dash(c.lastChange)),
    el("td", {}, windowText(c.window)),
    el("td", {}, now));
}

function renderFleet(data) {
  document.getElementById("revision").textContent = data.revision ? `fleet revision ${short(data.revision)}` : "";
  replace("counts", PHASES.map((p) => el("div", { class: `chip` }, el("b", {}, data.counts[p] || 0), badge(p))));
  replace("waves", el("div", { class: "waves" }, data.waves.map(waveRow)));
  fillSelect("filter-phase", PHASES);
  fillSelect("filter-wave", data.waves.map((w) => w.name));
  const phase = document.getElementById("filter-phase").value;
  const wave = document.getElementById("filter-wave").value;
  const name = document.getElementById("filter-name").value.trim().toLowerCase();
  const shown = data.clients.filter((c) =>
    (!phase || c.phase === phase) &&
    (!wave || (c.wave || "(no wave)") === wave) &&
    (!name || c.name.toLowerCase().includes(name)));
  replace(document.querySelector("#clients tbody"), shown.map(clientRow));
  document.getElementById("shown").textContent = `${shown.length} of ${data.clients.length} clients`;
}

function fleetPage() {
  let last = null;
  const render = (data) => { last = data; renderFleet(data); };
  for (const id of ["filter-phase", "filter-wave", "filter-name"]) {
    document.getElementById(id).addEventListener("input", () => last && renderFleet(last));
  }
  poll("/api/fleet", render);
}

// ---- a client's page ------------------------------------------------------------------

function pairs(dl, entries) {
  replace(dl, entries.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function mark(same) {
  return same ? el("span", { class: "mark same", title: "live matches desired" }, "✓ same")
    : el("span", { class: "mark differs", title: "live differs from desired" }, "≠ differs");
}

function stateRows(data) {
  const v = data.view;
  if (!v) {
    return [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "not looked at yet"))];
  }
  const codeDesired = [el("span", { class: "mono" }, short(v.code.desired))];
  if (v.code.tag) codeDesired.push(" ", el("span", { class: "tag" }, v.code.tag));
  return [
    el("tr", {}, el("th", {}, "Code"), el("td", {}, codeDesired), el("td", { class: "mono" }, short(v.code.live)), el("td", {}, mark(v.code.same))),
    el("tr", {}, el("th", {}, "Schema version"), el("td", { class: "mono" }, dash(v.schema.desired)), el("td", { class: "mono" }, dash(v.schema.live)), el("td", {}, mark(v.schema.same))),
    el("tr", {}, el("th", {}, "Migrations between"), el("td", { colspan: "3", class: "mono" }, v.schemaPending.length ? v.schemaPending.join(", ") : "none")),
    el("tr", {}, el("th", {}, "Production deployment"), el("td", { class: "muted" }, "—"), el("td", { class: "mono" }, dash(v.deployment)), el("td", {})),
    el("tr", {}, el("th", {}, "Last backup"), el("td", { class: "muted" }, "—"), el("td", { class: "mono" }, dash(v.lastBackup)), el("td", {})),
  ];
}

function envRows(view) {
  if (!view) return [];
  if (!view.env.length) return [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "no variables"))];
  const signs = { add: "+ add", change: "~ change", remove: "− remove" };
  return view.env.map((e) => el("tr", {},
    el("td", { class: "mono" }, e.key, e.sensitive ? el("span", { class: "muted small" }, " sensitive") : null),
    el("td", { class: "mono" }, e.sensitive ? "(not shown)" : dash(e.desired)),
    el("td", { class: "mono" }, e.sensitive ? "(not shown)" : dash(e.live)),
    el("td", {}, e.change ? signs[e.change] || e.change : "✓ unchanged", e.drift ? el("span", { class: "drift" }, " · drift") : null)));
}

function renderPlan(view) {
  if (!view) {
    replace("plan-summary", "not looked at yet");
    replace("plan-steps");
    replace("plan-notes");
    return;
  }
  const p = view.plan;
  const words = { converged: "converged: nothing to do", changes: "changes", blocked: "blocked until someone intervenes" };
  replace("plan-summary", `${words[p.outcome] || p.outcome} · plan ${p.hash} · looked ${when(view.observedAt)}`);
  replace("plan-steps", p.steps.map((s) => el("li", { class: "mono" }, s)));
  replace("plan-notes",
    p.holds.map((h) => el("li", {}, el("b", {}, "holds: "), h)),
    p.blocks.map((b) => el("li", { class: "drift" }, el("b", {}, "blocked: "), b)),
    p.notes.map((n) => el("li", { class: "muted" }, n)));
}

function historyItem(e) {
  const good = ["completed", "succeeded"].includes(e.outcome);
  const bad = ["failed", "rolled_back"].includes(e.outcome);
  const detail = [];
  if (e.error) detail.push(`error: ${e.error}`);
  if (e.detail) detail.push(e.detail);
  if (e.versions && e.versions.length) detail.push(`versions ${e.versions.join(", ")}`);
  if (e.env_keys && e.env_keys.length) detail.push(`env ${e.env_keys.join(" ")}`);
  if (e.deployment_id) detail.push(`deployment ${e.deployment_id}`);
  return el("li", { class: good ? "good" : bad ? "bad" : null },
    el("span", { class: "when" }, when(e.at)),
    el("span", { class: "what" }, `${e.step} ${String(e.outcome).replace("_", " ")}`),
    el("span", { class: "muted" }, `by ${e.actor}`),
    detail.length ? el("span", { class: "detail" }, detail.join(" · ")) : null);
}

function renderClient(data) {
  document.title = `steward · ${data.name}`;
  replace("name", data.name);
  replace("phase", badge(data.phase));
  replace("reason", data.reason || "");
  const error = data.lastError ? `${when(data.lastError.at)}: ${data.lastError.message}` : "none";
  pairs(document.getElementById("rollout"), [
    ["Running", data.stage ? el("b", {}, data.stage) : "no step running"],
    ["Vercel project", data.project],
    ["Wave", dash(data.wave)],
    ["Last change", dash(data.lastChange)],
    ["Last error", error],
    ["Next retry", data.nextRetry ? when(data.nextRetry) : "—"],
  ]);
  const w = data.window;
  pairs(document.getElementById("schedule"), [
    ["Time zone", w ? w.timezone : "—"],
    ["Windows", w ? w.windows.join(", ") : "none: changes may start any time"],
    ["Next opening", windowText(w)],
    ...Object.entries(data.policy).map(([key, value]) => [`policy.${key}`, value]),
  ]);
  replace(document.querySelector("#state tbody"), stateRows(data));
  replace(document.querySelector("#env tbody"), envRows(data.view));
  renderPlan(data.view);
  const historyProblem = document.getElementById("history-problem");
  historyProblem.hidden = !data.historyError;
  historyProblem.textContent = data.historyError ? `cannot read the history: ${data.historyError}` : "";
  replace("history", data.history.length ? data.history.map(historyItem) : el("li", { class: "muted" }, "no update records yet"));
}

function clientPage() {
  const name = decodeURIComponent(location.pathname.replace(/^\/clients\//, ""));
  poll(`/api/clients/${encodeURIComponent(name)}`, renderClient);
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "fleet") fleetPage();
  else clientPage();
});
