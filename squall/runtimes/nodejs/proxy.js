// Squall's Node.js runtime proxy: the OpenWhisk runtime protocol over HTTP.
//
// Runs inside a sandbox, so it uses Node builtins only and never talks to Squall itself.
//
//   POST /init {"value": {name, main, code, binary, env}}   once per container
//   POST /run  {"value": args, namespace, action_name, activation_id, ...}
//
// Serves on the listening socket inherited as fd __OW_LISTEN_FD, else listens on the Unix
// socket named by env __OW_SOCKET (or TCP port __OW_PORT, default 8080, like OpenWhisk
// images), and tells the factory it is ready by writing one byte to the inherited pipe fd
// __OW_READY_FD. It takes its process group down when the pipe __OW_LIFELINE_FD reaches
// EOF (the factory let go of the container, or died).
//
// A runtime that got no request within WARM_UP_AFTER_MS (50 ms) of saying it is ready was
// started ahead of its action (a stem cell): it then runs its own /init and /run on an
// internal no-op (warmup.js) and resets itself, so that its first real /init and /run do
// not compile those paths first. __OW_WARM_UP_AFTER_MS=0 warms up before saying it is ready
// instead (every container, a cold start too: it then pays more than it saves).
//
// Guarantees:
// - /init is accepted once; any later /init answers 403. The warm-up's internal /init is
//   not one: the action sees a fresh proxy (no action, no __OW_* run variables left).
//   A request arriving during the warm-up waits for its end and the reset.
// - A failed /init answers 502 {"error": "Initialization has failed due to: ..."} and the
//   container stays unusable.
// - Inline (not zipped) code is compiled from memory; nothing is written for it:
//   __filename is <workdir>/index.js, __dirname the work directory.
// - /run before a successful /init answers 403 {"error": "Cannot run the action before
//   initialization."} (OpenWhisk's own proxies disagree here: 403, 500 or 502; Squall's
//   invoker never does it, and 403 says plainly that the caller is at fault).
// - Requests may be pipelined (the invoker writes a cold start's /init and first /run
//   together): a /run waits until the /init before it was answered (its answer written),
//   so it sees that /init's outcome as if it came alone: behind a failed one, 403. A /run
//   with the header X-Squall-Deadline-After-Ms: N gets deadline (__OW_DEADLINE) = the wall
//   clock in ms when it starts + N, in place of its body's; with X-Squall-Init-Deadline-Ns:
//   M, it answers 408 and runs nothing if CLOCK_MONOTONIC reads M or later when it would
//   start: the invoker, whose timer fires a little after M, may be recording an init timeout.
// - Results: object/array (or a Promise of one) → 200; undefined/null → 200 {}; a rejected
//   Promise → 200 {"error": <reason>} (application error); a synchronous throw → 502
//   {"error": "An error has occurred: <err>"}; anything else → 502.
// - With __OW_CONCURRENCY == 1 (the default), after every /init and /run answer (whatever
//   its status) the line XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX is written to stdout and
//   stderr through the same streams as console.log/console.error, after the action
//   finished, and the HTTP answer is sent only once both writes completed: the invoker's
//   log reader sees all of an activation's output before its sentinel. With concurrency
//   > 1, runs overlap, logs cannot be split per activation and no sentinels are written.
'use strict';

// Only what every container needs is loaded at start: a cold start waits for it. The
// zip support (with zlib), `url` and the warm-up are loaded where they are used.
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const Module = require('module');

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n';
const CONCURRENCY = Math.max(1, parseInt(process.env.__OW_CONCURRENCY || '1', 10) || 1);
const WRITE_SENTINELS = CONCURRENCY === 1;
const NOT_A_DICT = 'The action did not return a dictionary or array.';
const MAIN_NAME = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;

let initStarted = false; // set on the first /init: a container is initialized at most once
let actionMain = null; // the action's entry point once /init succeeded
let runEnvKeys = []; // __OW_* names exported by the previous run, cleared by the next one
let warming = false; // during the warm-up: no sentinels (its output would be in the logs)
let warmUpDone = null; // the warm-up in progress (a Promise): the invoker's requests wait
let requested = false; // whether a request of the invoker came: then no warm-up starts
let initAnswered = null; // while an /init is not answered, a Promise of its answer's write

// A cold start's /init arrives a millisecond or two after the ready byte, and would pay
// more for a warm-up (its own HTTP server and client) than it saves: only a runtime left
// idle this long warms up; 0: every runtime, before it says it is ready.
const WARM_UP_AFTER_MS = (() => {
  const ms = parseInt(process.env.__OW_WARM_UP_AFTER_MS || '', 10);
  delete process.env.__OW_WARM_UP_AFTER_MS;
  return Number.isNaN(ms) || ms < 0 ? 50 : ms;
})();

class InitError extends Error {}

function workRoot() {
  return process.env.__OW_WORKDIR || require('os').tmpdir();
}

function lookup(object, dotted) {
  let value = object;
  for (const part of dotted.split('.')) {
    if (value === null || value === undefined) return undefined;
    value = value[part];
  }
  return value;
}

function errorText(err) {
  // A SyntaxError's stack starts with "file:line", the offending source line and a caret
  // marker before the message: that location is what the user needs to see.
  if (err instanceof SyntaxError && typeof err.stack === 'string') {
    const lines = err.stack.split('\n');
    const end = lines.findIndex((line) => line.startsWith('SyntaxError'));
    if (end >= 0) return lines.slice(0, end + 1).filter((line) => line !== '').join('\n');
  }
  return String(err);
}

function loadSource(code, main) {
  // The file name is only for stack traces and module resolution: the code is compiled
  // from memory, as OpenWhisk's runtime evaluates inline code, and nothing is written.
  const dir = workRoot();
  const filename = path.join(dir, 'index.js');
  const mod = new Module(filename, null);
  mod.filename = filename;
  mod.paths = Module._nodeModulePaths(dir);
  const originalExports = mod.exports;
  // `function main() {}` at top level is local to the CommonJS wrapper, so a footer
  // captures it by name; exports.main / module.exports.main are looked up afterwards.
  const footer =
    `\n;try { module.__squallMain = ${main}; } ` +
    'catch (e) { if (!(e instanceof ReferenceError)) throw e; }\n';
  mod._compile(code + footer, filename);
  mod.loaded = true;
  const candidates = [mod.__squallMain, lookup(mod.exports, main), lookup(originalExports, main)];
  return candidates.find((candidate) => typeof candidate === 'function');
}

async function loadZip(code, main) {
  const { isZip, extractZip } = require('./unzip');
  const buffer = Buffer.from(code, 'base64');
  if (!isZip(buffer)) throw new InitError('the action code is not a valid zip file');
  const dir = fs.mkdtempSync(path.join(workRoot(), 'action-'));
  extractZip(buffer, dir);
  const has = (name) => fs.existsSync(path.join(dir, name));
  if (!has('package.json') && !has('index.js')) {
    throw new InitError('Zipped actions must contain either package.json or index.js at the root.');
  }
  // Relative file access in the action (fs.readFileSync('./data.json')) refers to the archive.
  process.chdir(dir);
  let exported;
  try {
    exported = require(dir); // package.json "main", else index.js; node_modules resolve from dir
  } catch (err) {
    if (err.code !== 'ERR_REQUIRE_ESM') throw err;
    exported = await import(require('url').pathToFileURL(require.resolve(dir)).href);
  }
  return lookup(exported, main);
}

async function initialize(value) {
  const main = value.main || 'main';
  if (!MAIN_NAME.test(main)) {
    throw new InitError(`invalid main function name ${JSON.stringify(main)}`);
  }
  if (typeof value.code !== 'string' || value.code === '') {
    throw new InitError('Missing main/no code to execute.');
  }
  const env = value.env && typeof value.env === 'object' ? value.env : {};
  for (const [key, val] of Object.entries(env)) {
    process.env[key] = typeof val === 'string' ? val : JSON.stringify(val);
  }
  const fn = value.binary ? await loadZip(value.code, main) : loadSource(value.code, main);
  if (typeof fn !== 'function') {
    throw new InitError(`Action entrypoint '${main}' is not a function.`);
  }
  return fn;
}

function serializeError(reason) {
  // Like the serialize-error package OpenWhisk uses: Error objects are not JSON-friendly.
  if (!reason) return {};
  if (!(reason instanceof Error)) return reason;
  const out = { name: reason.name, message: reason.message };
  for (const key of Object.keys(reason)) out[key] = reason[key];
  if (typeof reason.stack === 'string') out.stack = reason.stack;
  return out;
}

function exportRunEnv(message) {
  // process.env is global: with concurrency > 1 the latest run's values win, as in OpenWhisk.
  // Only a value that differs from what the environment holds is written, and only a name
  // this run does not export is deleted: each write is a libc setenv, which looks its
  // NAME=value up in a tree of every string it was ever given (glibc frees none of them),
  // and each delete an unsetenv. Most values (namespace, action name, API host and key)
  // are the same run after run: deleting and setting them again cost ~10 % of a no-op
  // /run's CPU. What the action sees is the same: a value it changed or deleted is set
  // again (the read compares with the environment, not with the last run's message).
  const keys = [];
  for (const [key, val] of Object.entries(message)) {
    if (key === 'value' || typeof val !== 'string') continue;
    const name = `__OW_${key.toUpperCase()}`;
    if (process.env[name] !== val) process.env[name] = val;
    keys.push(name);
  }
  for (const key of runEnvKeys) if (!keys.includes(key)) delete process.env[key];
  runEnvKeys = keys;
}

async function run(message) {
  exportRunEnv(message);
  const args = message.value === undefined || message.value === null ? {} : message.value;
  let result;
  try {
    result = actionMain(args);
  } catch (err) {
    console.error(err && err.stack ? err.stack : String(err));
    return [502, { error: `An error has occurred: ${err}` }];
  }
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
    try {
      result = await result;
    } catch (reason) {
      return [200, { error: serializeError(reason) }];
    }
  }
  if (result === undefined || result === null) return [200, {}];
  if (typeof result !== 'object') return [502, { error: NOT_A_DICT }];
  return [200, result];
}

function writeSentinels() {
  if (!WRITE_SENTINELS) return Promise.resolve();
  // Warming up, an empty write: the streams and their write path are made, no byte sent.
  const line = warming ? '' : SENTINEL;
  const write = (stream) => new Promise((resolve) => stream.write(line, () => resolve()));
  return Promise.all([write(process.stdout), write(process.stderr)]);
}

function respond(res, status, payload) {
  let body;
  try {
    body = JSON.stringify(payload);
    if (typeof body !== 'string') throw new Error('it serializes to nothing'); // toJSON() tricks
  } catch (err) {
    status = 502;
    const error = `The action did not return a valid JSON value: ${err.message}`;
    body = JSON.stringify({ error });
  }
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

async function handleInit(message) {
  if (initStarted) return [403, { error: 'Cannot initialize the action more than once.' }];
  initStarted = true;
  try {
    const value = message.value && typeof message.value === 'object' ? message.value : {};
    actionMain = await initialize(value);
    return [200, { ok: true }];
  } catch (err) {
    const text = err instanceof InitError ? err.message : errorText(err);
    if (!(err instanceof InitError)) console.error(err && err.stack ? err.stack : String(err));
    return [502, { error: `Initialization has failed due to: ${text}` }];
  }
}

// Whether the /init before this (pipelined) /run answered at or after the bound the
// invoker gave (its header; same clock: uv_hrtime is CLOCK_MONOTONIC). Checked when the run
// would start, after that answer was written: see squall.sandbox.container for the window.
function initTooLate(req) {
  const bound = req.headers['x-squall-init-deadline-ns'];
  if (bound === undefined) return false;
  try {
    return process.hrtime.bigint() >= BigInt(bound);
  } catch (err) {
    return false; // not a number: no bound
  }
}

async function handle(req, res, body) {
  let status, payload;
  let message = null;
  try {
    message = JSON.parse(body.length ? body.toString('utf8') : '{}');
  } catch (err) {
    [status, payload] = [400, { error: `The request body is not valid JSON: ${err.message}` }];
  }
  if (status === undefined) {
    if (message === null || typeof message !== 'object') message = {};
    if (req.url === '/init') {
      [status, payload] = await handleInit(message);
    } else if (actionMain === null) {
      [status, payload] = [403, { error: 'Cannot run the action before initialization.' }];
    } else if (initTooLate(req)) {
      [status, payload] = [408, { error: 'The initialization answered past its deadline.' }];
    } else {
      const after = req.headers['x-squall-deadline-after-ms'];
      if (after !== undefined) message.deadline = String(Date.now() + (parseInt(after, 10) || 0));
      [status, payload] = await run(message);
    }
  }
  await writeSentinels();
  respond(res, status, payload);
}

function onRequest(req, res) {
  if (req.method !== 'POST' || (req.url !== '/init' && req.url !== '/run')) {
    req.resume();
    return respond(res, 404, { error: 'Not found.' });
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks)).catch((err) => {
      console.error(err && err.stack ? err.stack : String(err));
      if (!res.headersSent) respond(res, 500, { error: `The runtime proxy failed: ${err}` });
    });
  });
}

// The invoker's requests: never handled during the warm-up (the proxy's state is then the
// warm-up's own), only after it ended and the proxy was reset.
// (A connection alone does not count: Docker's invoker probes the port before /init.)
// Node parses requests pipelined on one connection at once and would handle them side by
// side (only their answers are queued in order): a /run behind an /init waits for the write
// of that /init's answer. Noted here, in the order the requests arrive.
const server = http.createServer((req, res) => {
  requested = true;
  const before = req.url === '/run' ? initAnswered : null;
  if (req.url === '/init') initAnswered = whenAnswered(res);
  if (warmUpDone === null && before === null) return onRequest(req, res);
  // The request's body waits, paused. A /run whose /init answer found the connection
  // closed (the invoker gave up on this activation) runs nothing: nobody would read its
  // answer, and the invoker records the activation without it. (Writing into a connection
  // the peer closed still emits 'finish'; the failed write destroyed the socket.)
  Promise.all([warmUpDone, before]).then(([, delivered]) => {
    if (delivered === false || req.socket.destroyed) return req.destroy();
    return onRequest(req, res);
  });
});

// Settles with whether the /init answer was handed to the socket (true), or the
// connection closed before it was (false).
function whenAnswered(res) {
  const answered = new Promise((resolve) => {
    const settle = (delivered) => {
      if (initAnswered === answered) initAnswered = null; // later runs wait for nothing
      resolve(delivered);
    };
    res.once('finish', () => settle(true));
    res.once('close', () => settle(res.writableFinished));
  });
  return answered;
}
// The invoker keeps one connection open for the life of the container, possibly idle for
// minutes between activations: never close idle keep-alive connections on our side.
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.headersTimeout = 0;

// A stray rejected promise in action code must not kill a warm container (Node's default).
process.on('unhandledRejection', (reason) => {
  console.error('Unhandled promise rejection:', reason);
});

// The factory holds the write end of the pipe __OW_LIFELINE_FD for as long as it wants this
// container. EOF means it destroyed the container or itself died (an invoker crash): take
// the whole process group down so nothing is left behind. (An action that blocks the event
// loop forever is only stopped by the invoker's own kill or its pid file.)
function watchLifeline() {
  const fd = parseInt(process.env.__OW_LIFELINE_FD || '', 10);
  delete process.env.__OW_LIFELINE_FD;
  if (Number.isNaN(fd)) return;
  const lifeline = new net.Socket({ fd, readable: true, writable: false });
  const die = () => {
    try {
      process.kill(-process.pid, 'SIGKILL'); // the group this proxy leads, itself included
    } catch (err) {
      process.exit(1); // not a group leader: only this process goes
    }
  };
  lifeline.on('data', () => {});
  lifeline.on('end', die);
  lifeline.on('error', die);
  lifeline.unref();
}

function signalReady() {
  const fd = parseInt(process.env.__OW_READY_FD || '', 10);
  delete process.env.__OW_READY_FD;
  if (Number.isNaN(fd)) return;
  fs.writeSync(fd, 'r');
  fs.closeSync(fd);
}

server.on('error', (err) => {
  console.error(`runtime proxy cannot listen: ${err.message}`);
  process.exit(1);
});

// After the warm-up, the state a fresh proxy has: the invoker's /init is the first.
function reset() {
  warming = false;
  warmUpDone = null;
  initStarted = false;
  actionMain = null;
  for (const key of runEnvKeys) delete process.env[key];
  runEnvKeys = [];
}

function warmUpIfIdle() {
  if (requested || initStarted) return;
  warming = true;
  let running;
  try {
    running = require('./warmup').warmUp(onRequest);
  } catch (err) {
    running = Promise.reject(err);
  }
  // Whatever happens to the warm-up, the proxy is reset and the requests waiting for it
  // go on: a failed warm-up leaves a proxy as cold as one that never warmed up.
  warmUpDone = running
    .catch((err) => console.error(`runtime proxy warm-up failed: ${err && err.message}`))
    .then(reset);
}

function listening() {
  if (WARM_UP_AFTER_MS === 0) {
    // The invoker connects after the ready byte: the warm-up and the reset end first.
    warmUpIfIdle();
    warmUpDone.then(signalReady);
    return;
  }
  signalReady();
  setTimeout(warmUpIfIdle, WARM_UP_AFTER_MS);
}

function listen() {
  const listenFd = parseInt(process.env.__OW_LISTEN_FD || '', 10);
  delete process.env.__OW_LISTEN_FD;
  const socketPath = process.env.__OW_SOCKET;
  if (!Number.isNaN(listenFd)) {
    // The factory created and bound the socket: a sandbox needs no writable directory.
    server.listen({ fd: listenFd }, listening);
  } else if (socketPath) {
    // sun_path holds 107 bytes; the factory starts us in the socket's directory, so a long
    // absolute path can be bound by its short relative name instead.
    const bindPath =
      socketPath.length > 100 && path.dirname(socketPath) === process.cwd()
        ? path.basename(socketPath)
        : socketPath;
    fs.rmSync(bindPath, { force: true });
    server.listen(bindPath, listening);
  } else {
    server.listen(parseInt(process.env.__OW_PORT || '8080', 10), '0.0.0.0', listening);
  }
}

watchLifeline();
listen();
