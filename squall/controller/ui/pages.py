"""The dashboard's two HTML pages: sign-in and the dashboard itself.

The pages hold no data: the dashboard's script fetches it from ``/dashboard/api/…``
with the session cookie. What little the server writes into them (the namespace, an
error message) is HTML-escaped.
"""

from __future__ import annotations

from html import escape

from squall.controller.ui.assets import url

_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
{links}
</head>
"""


def _head(title: str, *styles: str) -> str:
    links = "\n".join(f'<link rel="stylesheet" href="{url(s)}">' for s in styles)
    return _HEAD.format(title=escape(title), links=links)


def sign_in(error: str | None = None) -> str:
    message = f'<p class="error" id="signin-error">{escape(error)}</p>' if error else ""
    return (
        _head("Squall dashboard: sign in", "dashboard.css")
        + f"""<body class="signin">
<main>
<h1>Squall</h1>
<form method="post" action="/dashboard/login" id="signin">
<label for="auth">Namespace key (<code>uuid:key</code>, as <code>AUTH</code> in
<code>~/.wskprops</code>)</label>
<input type="password" id="auth" name="auth" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{message}
</main>
</body>
</html>
"""
    )


_PLATFORM = """<section id="platform" class="tables">
<div><h2>Invokers</h2><table id="invokers"><thead><tr><th>invoker</th><th>status</th>
<th>details</th></tr></thead><tbody></tbody></table></div>
<div><h2>Containers</h2><table id="containers"><thead><tr><th>kind</th><th>state</th>
<th>count</th></tr></thead><tbody></tbody></table>
<p>memory reserved <strong id="memory">&ndash;</strong></p></div>
<div><h2>Queues and throttles</h2><table id="queues"><thead><tr><th>figure</th>
<th>value</th></tr></thead><tbody></tbody></table></div>
</section>
"""


def dashboard(namespace: str, *, operator: bool = False) -> str:
    """The dashboard of ``namespace``; ``operator`` adds the platform's figures."""
    options = "".join(
        f'<option value="{m}"{" selected" if m == 15 else ""}>last {label}</option>'
        for m, label in ((15, "15 minutes"), (60, "hour"), (360, "6 hours"), (1440, "day"))
    )
    return (
        _head(f"Squall dashboard: {namespace}", "uPlot.min.css", "dashboard.css")
        + f"""<body>
<header>
<h1>Squall</h1>
<span class="namespace">namespace <strong id="namespace">{escape(namespace)}</strong></span>
<select id="window" aria-label="time window">{options}</select>
<span id="updated" class="muted"></span>
<form method="post" action="/dashboard/logout"><button id="signout">Sign out</button></form>
</header>
<main>
<section class="tiles">
<div class="tile"><span class="label">activations</span><span id="total">&ndash;</span></div>
<div class="tile"><span class="label">errors</span><span id="errors">&ndash;</span></div>
<div class="tile"><span class="label">pending</span><span id="pending">&ndash;</span></div>
<div class="tile"><span class="label">cold starts</span><span id="cold">&ndash;</span></div>
<div class="tile"><span class="label">mean init (ms)</span><span id="init">&ndash;</span></div>
<div class="tile"><span class="label">throttled (429)</span><span id="throttled">&ndash;</span>
</div>
</section>
<section class="plots">
<figure><figcaption>Activations per minute, by status</figcaption><div id="plot-status"></div>
</figure>
<figure><figcaption>Latency per minute (ms): p50, p90, p99</figcaption>
<div id="plot-latency"></div></figure>
<figure><figcaption>Cold and warm starts per minute; mean init time (ms)</figcaption>
<div id="plot-starts"></div></figure>
<figure><figcaption>Throttled requests per minute (429), by limit</figcaption>
<div id="plot-throttled"></div></figure>
</section>
<section class="tables">
<div><h2>Busiest actions</h2><table id="busiest"><thead><tr><th>action</th><th>count</th>
<th>errors</th><th>p50 ms</th></tr></thead><tbody></tbody></table></div>
<div><h2>Slowest actions (p90)</h2><table id="slowest"><thead><tr><th>action</th>
<th>p90 ms</th><th>max ms</th><th>count</th></tr></thead><tbody></tbody></table></div>
</section>
{_PLATFORM if operator else ""}
<section class="activations">
<h2>Recent activations</h2>
<form id="filters">
<input id="filter-name" name="name" placeholder="action (e.g. hello or pkg/hello)">
<select id="filter-status" name="status"><option value="">any status</option>
<option>success</option><option>application error</option>
<option>action developer error</option><option>whisk internal error</option>
<option>pending</option></select>
<label>since <input id="filter-since" name="since" type="datetime-local"></label>
<label>until <input id="filter-upto" name="upto" type="datetime-local"></label>
<button type="submit">Filter</button>
<button type="button" id="filter-clear">Clear</button>
</form>
<p id="list-note" class="muted"></p>
<table id="activations"><thead><tr><th>start</th><th>action</th><th>status</th>
<th>duration ms</th><th>start kind</th><th>activation id</th></tr></thead>
<tbody></tbody></table>
</section>
<section id="detail" hidden>
<h2>Activation <code id="detail-id"></code> <button type="button" id="detail-close">close</button>
</h2>
<dl class="timing"><dt>wait</dt><dd id="detail-wait"></dd><dt>init</dt><dd id="detail-init">
</dd><dt>run</dt><dd id="detail-run"></dd><dt>status</dt><dd id="detail-status"></dd></dl>
<div id="detail-steps-box"><h3>Steps</h3><table id="detail-steps"><tbody></tbody></table></div>
<h3>Result</h3><pre id="detail-result"></pre>
<h3>Logs</h3><pre id="detail-logs"></pre>
<h3>Annotations</h3><pre id="detail-annotations"></pre>
</section>
</main>
<script src="{url("uPlot.iife.min.js")}"></script>
<script src="{url("plots.js")}"></script>
<script src="{url("dashboard.js")}"></script>
</body>
</html>
"""
    )
