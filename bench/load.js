// A small HTTP load generator for bench/invoke_latency.py.
//
//   node bench/load.js '{"url": "http://127.0.0.1:3233/api/v1", "connections": 50,
//                        "durationMs": 10000}'
//
// Options (one JSON argument): url (loopback only) — or urls, a list taken in rotation by
// every request (round robin over all connections) — method (GET), auth ("uuid:key",
// optional), body (a string, optional), connections (1), and either requests (a fixed
// count, shared by the connections) or durationMs (a fixed time); expectStatus (200).
// Every connection is one keep-alive socket (http.Agent with maxSockets = connections)
// that sends its next request as soon as the previous answer is read: a closed loop, so
// the figures are the server's, not a queue in the client.
//
// Prints one JSON object: requests, errors (answers other than expectStatus, or failed
// requests), statuses, elapsedMs, rps, and latencyMs {mean, p50, p90, p99, max}.
'use strict';

const http = require('http');

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  const urls = (opts.urls || [opts.url]).map((u) => new URL(u));
  for (const url of urls) {
    if (url.protocol !== 'http:' || !(LOOPBACK.has(url.hostname) || url.hostname.startsWith('127.'))) {
      throw new Error(`refusing to load anything but a loopback http:// address: ${url}`);
    }
  }
  let next = 0;
  const connections = opts.connections || 1;
  const expectStatus = opts.expectStatus || 200;
  const body = opts.body === undefined ? null : Buffer.from(opts.body);
  const headers = { accept: 'application/json' };
  if (opts.auth) headers.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  if (body) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = body.length;
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const request = (url) =>
    new Promise((resolve, reject) => {
      const req = http.request(url, { method: opts.method || 'GET', headers, agent }, (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve(res.statusCode));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });

  const hasCount = Number.isInteger(opts.requests);
  if (!hasCount && !(opts.durationMs > 0)) throw new Error('give requests or durationMs');
  const latencies = [];
  const statuses = {};
  let issued = 0;
  let errors = 0;
  const started = process.hrtime.bigint();
  const deadline = hasCount ? null : Date.now() + opts.durationMs;
  const more = () => (hasCount ? issued < opts.requests : Date.now() < deadline);

  async function connection() {
    while (more()) {
      issued += 1;
      const t0 = process.hrtime.bigint();
      let status = 'failed';
      try {
        status = await request(urls[next++ % urls.length]);
      } catch (err) {
        status = err.code || 'failed';
      }
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      statuses[status] = (statuses[status] || 0) + 1;
      if (status !== expectStatus) errors += 1;
    }
  }
  await Promise.all(Array.from({ length: connections }, connection));
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  agent.destroy();

  latencies.sort((a, b) => a - b);
  const sum = latencies.reduce((a, b) => a + b, 0);
  const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    requests: latencies.length,
    errors,
    statuses,
    connections,
    elapsedMs: round(elapsedMs),
    rps: round((latencies.length * 1000) / elapsedMs),
    latencyMs: {
      mean: round(latencies.length ? sum / latencies.length : null),
      p50: round(percentile(latencies, 50)),
      p90: round(percentile(latencies, 90)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies.length ? latencies[latencies.length - 1] : null),
    },
  };
}

main().then(
  (out) => process.stdout.write(JSON.stringify(out) + '\n'),
  (err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  },
);
