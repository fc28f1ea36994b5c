// Invocations through the official client: non-blocking then the record by id, a Python
// action, and an application error as the client surfaces it.
'use strict';

const { client, name, attempt, untilFinal, run } = require('./common');

const SLOW = 'function main(args) { return new Promise((ok) => setTimeout(() => ok({ done: args.n }), 200)); }';
const PY = 'def main(args):\n    return {"greeting": "Hello " + args.get("name", "stranger")}\n';
const FAILS = "function main() { return { error: 'boom' }; }";

run(async () => {
  const ow = client();
  const slow = name('compat-slow');
  const py = name('compat-py');
  const fails = name('compat-fails');
  await ow.actions.create({ name: slow, action: SLOW });
  await ow.actions.create({ name: py, action: PY, kind: 'python:default' });
  await ow.actions.create({ name: fails, action: FAILS });

  const accepted = await ow.actions.invoke({ name: slow, params: { n: 7 } });
  const fetched = await untilFinal(() => ow.activations.get({ activationId: accepted.activationId }));
  const pyNamed = await ow.actions.invoke({ name: py, blocking: true, result: true, params: { name: 'npm' } });
  const pyDefault = await ow.actions.invoke({ name: py, blocking: true, result: true });
  const failed = await attempt(ow.actions.invoke({ name: fails, blocking: true, result: true }));

  for (const act of [slow, py, fails]) await ow.actions.delete({ name: act });
  return { slow, accepted, fetched, pyNamed, pyDefault, failed };
});
