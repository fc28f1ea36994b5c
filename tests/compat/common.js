// Shared by the compatibility scripts: a client of the official `openwhisk` package, built
// exactly as a user would, from the server's address and key that the Python test passes in
// SQUALL_APIHOST (a full URL, e.g. http://127.0.0.1:PORT) and SQUALL_AUTH (uuid:key).
//
// Each script prints one JSON object on stdout with what it observed; the Python test makes
// the assertions, so a failing check shows the whole observation.
'use strict';

const openwhisk = require('openwhisk');

function client() {
  const apihost = process.env.SQUALL_APIHOST;
  const apiKey = process.env.SQUALL_AUTH;
  if (!apihost || !apiKey) throw new Error('SQUALL_APIHOST and SQUALL_AUTH must be set');
  return openwhisk({ apihost, api_key: apiKey });
}

// Names unique to this run, so scripts never collide on the shared server.
function name(stem) {
  return `${stem}-${process.env.SQUALL_PREFIX || process.pid}`;
}

// What the client rejected with, reduced to what a user of the client looks at.
function failure(err) {
  return {
    name: err.name,
    statusCode: err.statusCode,
    message: err.message,
    error: err.error,
  };
}

// Resolve to {ok: value} or {failed: failure(err)}: errors become data to assert on.
async function attempt(promise) {
  try {
    return { ok: await promise };
  } catch (err) {
    return { failed: failure(err) };
  }
}

// Call `fn` (which fetches an activation record) until the record is no longer pending,
// for at most `deadlineMs`. An accepted id is never unknown to Squall, so any rejection
// (a 404 included) is passed on at once.
async function untilFinal(fn, deadlineMs = 15000) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const record = await fn();
    if (record.response.status !== 'pending' || Date.now() > end) return record;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function run(main) {
  main().then(
    (observed) => process.stdout.write(JSON.stringify(observed) + '\n'),
    (err) => {
      process.stderr.write(`${err.stack || err}\n${JSON.stringify(failure(err))}\n`);
      process.exit(1);
    },
  );
}

module.exports = { client, name, attempt, untilFinal, run };
