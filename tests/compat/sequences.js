// Sequences (and a conductor action) through the official client: create a sequence with
// the client's `sequence` option and with an explicit exec, read it back, invoke it
// blocking (full record and result only) and non-blocking, read the components' records,
// the client's view of a bad sequence, and a composition driven by a conductor.
'use strict';

const { client, name, attempt, untilFinal, run } = require('./common');

const INC = 'function main(args) { return { n: (args.n || 0) + 1 }; }';
const DOUBLE = 'function main(args) { return { n: args.n * 2 }; }';
// Runs `next` once with the caller's n, then ends with the result it got back.
const CONDUCTOR = `function main(args) {
  if (args.next) return { action: args.next, params: { n: args.n }, state: { done: true } };
  return { params: { n: args.n, done: args.done } };
}`;

run(async () => {
  const ow = client();
  const inc = name('compat-inc');
  const double = name('compat-double');
  const seq = name('compat-seq');
  const explicit = name('compat-seq-exec');
  const empty = name('compat-seq-empty');
  const conductor = name('compat-conductor');
  await ow.actions.create({ name: inc, action: INC });
  await ow.actions.create({ name: double, action: DOUBLE });

  const created = await ow.actions.create({ name: seq, sequence: [`/_/${inc}`, `/_/${double}`] });
  const createdExplicit = await ow.actions.create({
    name: explicit,
    action: { exec: { kind: 'sequence', components: [`/_/${seq}`, `/_/${inc}`] } },
  });
  const got = await ow.actions.get({ name: seq });
  const record = await ow.actions.invoke({ name: seq, blocking: true, params: { n: 1 } });
  const components = [];
  for (const id of record.logs) components.push(await ow.activations.get({ activationId: id }));
  const nestedResult = await ow.actions.invoke({ name: explicit, blocking: true, result: true, params: { n: 1 } });
  const accepted = await ow.actions.invoke({ name: seq, params: { n: 5 } });
  const fetched = await untilFinal(() => ow.activations.get({ activationId: accepted.activationId }));
  const emptyCreate = await attempt(
    ow.actions.create({ name: empty, action: { exec: { kind: 'sequence', components: [] } } }),
  );
  const cyclic = await attempt(
    ow.actions.update({ name: seq, sequence: [`/_/${explicit}`] }),
  );

  await ow.actions.create({ name: conductor, action: CONDUCTOR, annotations: { conductor: true } });
  const composition = await ow.actions.invoke({
    name: conductor, blocking: true, params: { next: double, n: 21 },
  });

  for (const act of [explicit, seq, inc, double, conductor]) await ow.actions.delete({ name: act });
  return {
    inc, double, seq, created, createdExplicit, got, record, components, nestedResult,
    accepted, fetched, emptyCreate, cyclic, conductor, composition,
  };
});
