// The official client over https with a self-signed certificate (so ignore_certs), through
// nginx or to `squall standalone --tls-cert`: an action created and invoked blocking, a web
// action fetched with GET, and an action whose code is over 10 MB accepted; a client that
// checks certificates is refused.
'use strict';

const https = require('https');
const openwhisk = require('openwhisk');
const { name, attempt, run } = require('./common');

const HELLO = "function main(p) { return { greeting: 'Hello ' + (p.name || 'stranger') }; }";
const ECHO = 'function main(args) { return { method: args.__ow_method, headers: args.__ow_headers, name: args.name }; }';
const BIG_BYTES = 11 * 1024 * 1024;

function get(url) {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks)) }));
      })
      .on('error', reject);
  });
}

run(async () => {
  const apihost = process.env.SQUALL_APIHOST;
  const apiKey = process.env.SQUALL_AUTH;
  const ow = openwhisk({ apihost, api_key: apiKey, ignore_certs: true });
  const strict = openwhisk({ apihost, api_key: apiKey });

  const refused = await attempt(strict.actions.list());

  const hello = name('tls-hello');
  await ow.actions.create({ name: hello, action: HELLO });
  const invoked = await ow.actions.invoke({ name: hello, blocking: true, params: { name: 'nginx' } });

  const web = name('tls-web');
  await ow.actions.create({
    name: web,
    action: ECHO,
    annotations: { 'web-export': true },
  });
  const fetched = await get(`${apihost}/api/v1/web/guest/default/${web}.json?name=web`);

  const big = name('tls-big');
  const code = `function main() { return { big: true }; }\n//${'x'.repeat(BIG_BYTES)}\n`;
  const created = await ow.actions.create({ name: big, action: code });
  const bigResult = await ow.actions.invoke({ name: big, blocking: true, result: true });

  for (const act of [hello, web, big]) await ow.actions.delete({ name: act });
  return {
    refused,
    invoked: { status: invoked.response.status, result: invoked.response.result },
    fetched,
    big: { name: created.name, codeBytes: code.length, result: bigResult },
  };
});
