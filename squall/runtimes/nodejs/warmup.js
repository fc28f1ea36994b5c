// The Node.js proxy's warm-up: its own /init and /run, once, while nobody needs it.
//
// V8 compiles a function on its first call, and Node.js builds much of what serves a
// request lazily: the HTTP parser and response code, process.stdout/stderr, the module
// compiler. A runtime started before its action is known (a stem cell) would pay that on
// its first /init and /run. So, while it waits (see proxy.js for when), the proxy serves
// one internal /init of a no-op and one /run through a private HTTP server with the very
// request handler the invoker's requests reach; the invoker's requests wait meanwhile.
//
// Guarantees:
// - The exchange goes over an abstract Unix socket named with a random token, and
//   requests without the token are refused: inside a sandbox that socket is in the
//   sandbox's own network namespace, where nothing else runs yet.
// - Nothing reaches stdout or stderr (the invoker reads them as the first activation's
//   logs) unless the warm-up itself fails, which is then said once on stderr.
// - The caller resets the proxy's state afterwards (see proxy.js: the action, the
//   /init-once flag, the exported __OW_* variables), so the invoker's /init is the
//   container's first as far as the action can tell.
// - A warm-up that fails is not fatal: the runtime starts all the same, only colder.
// - It ends with a young-generation collection: otherwise the garbage of start-up and
//   warm-up makes V8 scavenge (1-6 ms) on the invoker's first connection. The action's
//   context never gets a `gc` function (only a throw-away context had one).
'use strict';

const http = require('http');
const net = require('net');

const NOOP = 'function main(params) { return {}; }';
const TOKEN_HEADER = 'x-squall-warm-up';

// One request on `socket`, resolved with the answer's status once all of it arrived.
function exchange(socket, token, route, payload, extra = '') {
  const body = Buffer.from(JSON.stringify(payload));
  const head =
    `POST ${route} HTTP/1.1\r\nHost: localhost\r\n${TOKEN_HEADER}: ${token}\r\n${extra}` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const onData = (chunk) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      const text = received.subarray(0, end).toString('latin1');
      const length = /\r\ncontent-length: *(\d+)/i.exec(text);
      if (length === null || received.length < end + 4 + Number(length[1])) return;
      cleanup();
      resolve(Number(text.split(' ')[1]));
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`the connection closed before the answer to ${route}`));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
    socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
  });
}

function listening(server, name) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(name, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function connected(name) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(name, () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

// V8's collector, without `--expose-gc` for the whole process: the flag is set only while
// one new context is made, which hands its `gc` out; contexts made later have none.
function collectYoungGeneration() {
  const v8 = require('v8');
  const vm = require('vm');
  v8.setFlagsFromString('--expose-gc');
  try {
    vm.runInNewContext('gc')({ type: 'minor' });
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

// Runs /init of a no-op and one /run through `listener` (the proxy's request handler);
// resolves when both answers arrived and the private server is closed, whatever happened.
async function warmUp(listener) {
  const token = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const server = http.createServer((req, res) => {
    if (req.headers[TOKEN_HEADER] === token) return listener(req, res);
    res.writeHead(403).end();
  });
  const name = `\0squall-warm-up-${token}`;
  let socket = null;
  try {
    await listening(server, name);
    socket = await connected(name);
    const init = await exchange(socket, token, '/init', {
      value: { name: 'warm-up', main: 'main', code: NOOP },
    });
    // With the headers of a /run written with its /init (proxy.js): their paths too.
    const bound = process.hrtime.bigint() + 60000000000n;
    const headers =
      `x-squall-deadline-after-ms: 60000\r\nx-squall-init-deadline-ns: ${bound}\r\n`;
    const run = await exchange(
      socket,
      token,
      '/run',
      {
        value: {},
        namespace: 'warm-up',
        action_name: 'warm-up',
        activation_id: '0'.repeat(32),
        deadline: '0',
      },
      headers,
    );
    if (init !== 200 || run !== 200) throw new Error(`/init answered ${init}, /run ${run}`);
  } catch (err) {
    process.stderr.write(`runtime proxy warm-up failed (it starts colder): ${err}\n`);
  } finally {
    if (socket !== null) socket.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(() => resolve()));
  }
  try {
    collectYoungGeneration();
  } catch (err) {
    process.stderr.write(`runtime proxy warm-up could not collect garbage: ${err}\n`);
  }
}

module.exports = { warmUp };
