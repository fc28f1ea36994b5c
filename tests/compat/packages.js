// Packages through the official client: create, duplicate, get, list, an action inside
// a package (create and invoke `pkg/act`), deleting a non-empty package, then cleanly.
'use strict';

const { client, name, attempt, run } = require('./common');

const INSIDE = 'function main(args) { return { from: args.from, colour: args.colour }; }';

run(async () => {
  const ow = client();
  const pkg = name('compat-pkg');
  const act = `${pkg}/inside`;

  const created = await ow.packages.create({
    name: pkg,
    package: { parameters: [{ key: 'colour', value: 'blue' }] },
  });
  const duplicate = await attempt(ow.packages.create({ name: pkg }));
  const actionCreated = await ow.actions.create({ name: act, action: INSIDE });
  const got = await ow.packages.get({ name: pkg });
  const listed = await ow.packages.list({ limit: 200 });
  const invoked = await ow.actions.invoke({ name: act, blocking: true, result: true, params: { from: 'client' } });
  const deleteNonEmpty = await attempt(ow.packages.delete({ name: pkg }));
  const actionDeleted = await ow.actions.delete({ name: act });
  const deleted = await ow.packages.delete({ name: pkg });
  const getAfterDelete = await attempt(ow.packages.get({ name: pkg }));

  return {
    name: pkg,
    created,
    duplicate,
    actionCreated,
    got,
    listedNames: listed.map((p) => p.name),
    invoked,
    deleteNonEmpty,
    actionDeleted,
    deleted,
    getAfterDelete,
  };
});
