// The dashboard page: polls /dashboard/api/… with the session cookie and redraws the
// figures, the tables and the activations list without reloading. Exposed as
// window.squallDashboard for the browser tests (the plots and the last answers).
"use strict";

(() => {
  const POLL_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const state = { summary: null, list: null, detail: null, plots: null, filters: {} };
  window.squallDashboard = state;

  async function getJSON(path) {
    const res = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) {
      window.location.assign("/dashboard"); // the session ended: back to sign-in
      throw new Error("signed out");
    }
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return res.json();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function fill(tableId, rows, render) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      render(tr, r);
      return tr;
    }));
  }

  const ms = (v) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);
  const when = (t) => new Date(t).toLocaleString();
  const statusClass = (s) => "status-" + s.replace(/ /g, "-");

  function showSummary(s) {
    state.summary = s;
    let total = 0, ok = 0, pending = 0, cold = 0, init = 0;
    for (const b of s.buckets) {
      for (const [k, n] of Object.entries(b.statuses)) {
        total += n;
        if (k === "success") ok += n;
        if (k === "pending") pending += n;
      }
      cold += b.cold;
      init += b.initMs;
    }
    $("total").textContent = total;
    $("errors").textContent = total - ok - pending;
    $("pending").textContent = pending;
    $("cold").textContent = cold;
    $("init").textContent = cold ? ms(init / cold) : "–";
    $("throttled").textContent = s.throttled.reduce((a, r) => a + r.count, 0);
    SquallPlots.update(state.plots, s);
    fill("busiest", s.busiest, (tr, a) => {
      cell(tr, a.name); cell(tr, a.count); cell(tr, a.errors); cell(tr, ms(a.p50));
    });
    fill("slowest", s.slowest, (tr, a) => {
      cell(tr, a.name); cell(tr, ms(a.p90)); cell(tr, ms(a.max)); cell(tr, a.count);
    });
  }

  function showList(answer) {
    state.list = answer;
    const rows = answer.activations;
    $("list-note").textContent = rows.length
      ? (answer.complete ? "" : "only the newest activations were searched for this status")
      : "no activations match";
    fill("activations", rows, (tr, a) => {
      tr.dataset.id = a.activationId;
      tr.className = "clickable";
      cell(tr, when(a.start));
      cell(tr, a.name);
      cell(tr, a.status, statusClass(a.status));
      cell(tr, a.status === "pending" ? "running" : a.duration);
      cell(tr, a.status === "pending" ? "" : a.initTime !== null && a.initTime !== undefined ? "cold" : "warm");
      cell(tr, a.activationId, "mono");
      tr.addEventListener("click", () => openDetail(a.activationId));
    });
  }

  // The operator's view (only on the system namespace's page).
  function showPlatform(p) {
    state.platform = p;
    fill("invokers", p.invokers, (tr, i) => {
      cell(tr, i.id);
      cell(tr, i.status, "invoker-" + i.status);
      const extra = Object.entries(i).filter(([k]) => k !== "id" && k !== "status");
      cell(tr, extra.map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", "));
    });
    fill("containers", p.containers, (tr, c) => {
      cell(tr, c.labels.kind); cell(tr, c.labels.state); cell(tr, c.value);
    });
    const mb = (xs) => xs.reduce((a, x) => a + x.value, 0) / (1024 * 1024);
    // Standalone: its invoker's pool figures. A cluster controller has none of its own,
    // but the invokers' health pings carry their busy and user memory.
    const pinged = p.invokers.filter((i) => typeof i.userMemoryMb === "number");
    const sum = (xs, k) => xs.reduce((a, x) => a + x[k], 0);
    $("memory").textContent = p.memoryCapacity.length
      ? `${mb(p.memoryReserved)} of ${mb(p.memoryCapacity)} MB`
      : pinged.length
        ? `${sum(pinged, "busyMb")} of ${sum(pinged, "userMemoryMb")} MB busy`
        : "–";
    const figures = [
      ...p.queues.map((q) => [`queue of ${q.labels.invoker}`, q.value]),
      ...p.invocations.map((q) => [`invocations ${q.labels.outcome}`, q.value]),
      ...p.throttled.map((q) => [`throttled: ${q.labels.reason}`, q.value]),
    ];
    fill("queues", figures, (tr, [k, v]) => { cell(tr, k); cell(tr, v); });
  }

  async function openDetail(id) {
    const d = await getJSON(`/dashboard/api/activations/${encodeURIComponent(id)}`);
    state.detail = d;
    const a = d.activation;
    $("detail-id").textContent = a.activationId;
    $("detail-wait").textContent = d.timing.wait ?? "–";
    $("detail-init").textContent = d.timing.init ?? "– (warm)";
    $("detail-run").textContent = d.timing.run ?? "–";
    $("detail-status").textContent = a.response.status;
    $("detail-result").textContent = JSON.stringify(a.response.result ?? null, null, 2);
    $("detail-logs").textContent = (a.logs || []).join("\n");
    $("detail-annotations").textContent = JSON.stringify(a.annotations || [], null, 2);
    $("detail-steps-box").hidden = d.steps.length === 0;
    fill("detail-steps", d.steps, (tr, st) => {
      tr.className = "clickable";
      cell(tr, st.name); cell(tr, st.status); cell(tr, st.duration); cell(tr, st.activationId, "mono");
      tr.addEventListener("click", () => openDetail(st.activationId));
    });
    $("detail").hidden = false;
    $("detail").scrollIntoView({ block: "nearest" });
  }

  function readFilters() {
    const local = (v) => (v ? String(new Date(v).getTime()) : "");
    state.filters = {
      name: $("filter-name").value.trim(),
      status: $("filter-status").value,
      since: local($("filter-since").value),
      upto: local($("filter-upto").value),
    };
  }

  function listPath() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(state.filters)) if (v) q.set(k, v);
    return "/dashboard/api/activations?" + q.toString();
  }

  async function refresh() {
    try {
      const minutes = $("window").value;
      const operator = $("platform") !== null;
      const [summary, list, platform] = await Promise.all([
        getJSON(`/dashboard/api/summary?minutes=${minutes}`),
        getJSON(listPath()),
        operator ? getJSON("/dashboard/api/platform") : null,
      ]);
      showSummary(summary);
      showList(list);
      if (platform) showPlatform(platform);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      state.refreshed = (state.refreshed || 0) + 1;
    } catch (e) {
      $("updated").textContent = "update failed: " + e.message;
    }
  }

  window.addEventListener("DOMContentLoaded", () => {
    state.plots = SquallPlots.create();
    $("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      readFilters();
      refresh();
    });
    $("filter-clear").addEventListener("click", () => {
      $("filters").reset();
      readFilters();
      refresh();
    });
    $("window").addEventListener("change", refresh);
    $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
    refresh();
    setInterval(refresh, POLL_MS);
  });
})();
