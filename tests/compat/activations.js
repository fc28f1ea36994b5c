// Activations through the official client: list (with a name filter and count), get,
// logs and result of one activation.
'use strict';

const { client, name, run } = require('./common');

const LOGS = "function main(args) { console.log('line one'); console.error('line two'); return { n: args.n }; }";

run(async () => {
  const ow = client();
  const act = name('compat-logs');
  await ow.actions.create({ name: act, action: LOGS });
  const first = await ow.actions.invoke({ name: act, blocking: true, params: { n: 1 } });
  const second = await ow.actions.invoke({ name: act, blocking: true, params: { n: 2 } });

  const id = second.activationId;
  const got = await ow.activations.get({ activationId: id });
  const logs = await ow.activations.logs({ activationId: id });
  const result = await ow.activations.result({ activationId: id });
  const listed = await ow.activations.list({ name: act, limit: 10 });
  const listedDocs = await ow.activations.list({ name: act, limit: 10, docs: true });
  const counted = await ow.activations.list({ name: act, count: true });

  await ow.actions.delete({ name: act });
  return {
    name: act,
    ids: [first.activationId, second.activationId],
    got,
    logs,
    result,
    listed,
    listedDocs,
    counted,
  };
});
