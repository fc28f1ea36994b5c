// The dashboard's three time-series plots, drawn with uPlot (vendored, see assets.py).
// Each plot keeps the data it was last given in `plot.data` (uPlot's own), which the
// browser tests read to check the figures against the REST API.
"use strict";

const SquallPlots = (() => {
  const STATUS_COLOURS = {
    "success": "#2e7d32",
    "application error": "#f9a825",
    "action developer error": "#ef6c00",
    "whisk internal error": "#c62828",
    "pending": "#1565c0",
  };
  const STATUSES = Object.keys(STATUS_COLOURS);
  // OpenWhisk's names of the limits a request can be throttled by.
  const LIMITS = ["invocationsPerMinute", "concurrentInvocations", "firesPerMinute"];

  function width(el) {
    return Math.max(320, el.clientWidth || 600);
  }

  function make(el, series, axes) {
    const opts = {
      width: width(el),
      height: 220,
      scales: { x: { time: true } },
      series: [{}, ...series],
      axes: axes || [{}, {}],
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, [[], ...series.map(() => [])], el);
    window.addEventListener("resize", () => plot.setSize({ width: width(el), height: 220 }));
    return plot;
  }

  function line(label, stroke, extra) {
    return Object.assign({ label, stroke, width: 2, spanGaps: false }, extra || {});
  }

  // Every minute of the window gets a point (0, or null where nothing was measured), so a
  // quiet minute shows as such instead of a line drawn across it.
  function minutes(summary) {
    const xs = [];
    const first = summary.since - (summary.since % summary.bucketMs);
    for (let t = first; t <= summary.upto; t += summary.bucketMs) xs.push(t);
    const byStart = new Map(summary.buckets.map((b) => [b.start, b]));
    return { xs, at: (t) => byStart.get(t) };
  }

  function create() {
    const status = make(
      document.getElementById("plot-status"),
      STATUSES.map((s) => line(s, STATUS_COLOURS[s])),
    );
    // Minutes without ended activations have no latency: points show lone minutes.
    const dots = { points: { show: true, size: 6 } };
    const latency = make(document.getElementById("plot-latency"), [
      line("p50", "#2e7d32", dots),
      line("p90", "#f9a825", dots),
      line("p99", "#c62828", dots),
    ]);
    const starts = make(
      document.getElementById("plot-starts"),
      [line("cold", "#1565c0"), line("warm", "#90a4ae"), line("mean init ms", "#6a1b9a", { scale: "ms", ...dots })],
      [{}, {}, { scale: "ms", side: 1, grid: { show: false } }],
    );
    const throttled = make(
      document.getElementById("plot-throttled"),
      LIMITS.map((l, i) => line(l, ["#c62828", "#ef6c00", "#6a1b9a"][i])),
    );
    return { status, latency, starts, throttled };
  }

  function update(plots, summary) {
    const { xs, at } = minutes(summary);
    const secs = xs.map((t) => t / 1000); // uPlot's time scale counts seconds
    const count = (t, s) => (at(t) ? at(t).statuses[s] || 0 : 0);
    plots.status.setData([secs, ...STATUSES.map((s) => xs.map((t) => count(t, s)))]);
    const pct = (k) => xs.map((t) => (at(t) ? at(t)[k] : null));
    plots.latency.setData([secs, pct("p50"), pct("p90"), pct("p99")]);
    plots.starts.setData([
      secs,
      xs.map((t) => (at(t) ? at(t).cold : 0)),
      xs.map((t) => (at(t) ? at(t).warm : 0)),
      xs.map((t) => (at(t) && at(t).cold ? at(t).initMs / at(t).cold : null)),
    ]);
    const refused = new Map(summary.throttled.map((r) => [`${r.start} ${r.limit}`, r.count]));
    plots.throttled.setData([
      secs,
      ...LIMITS.map((l) => xs.map((t) => refused.get(`${t} ${l}`) || 0)),
    ]);
  }

  return { create, update, STATUSES };
})();
