// Package bindings through the official client: bind a package, invoke an action through
// the binding (package < binding < payload parameters), read the binding, and the
// client's view of a binding of a binding and of a binding to a missing package.
'use strict';

const { client, name, attempt, run } = require('./common');

const ECHO = 'function main(args) { return args; }';

run(async () => {
  const ow = client();
  const pkg = name('compat-src');
  const bnd = name('compat-bnd');
  await ow.packages.create({
    name: pkg,
    package: {
      parameters: [
        { key: 'a', value: 'package' },
        { key: 'b', value: 'package' },
      ],
    },
  });
  await ow.actions.create({ name: `${pkg}/echo`, action: ECHO });
  const bound = await ow.packages.create({
    name: bnd,
    package: {
      binding: { namespace: 'guest', name: pkg },
      parameters: [{ key: 'b', value: 'binding' }],
    },
  });
  const got = await ow.packages.get({ name: bnd });
  const invoked = await ow.actions.invoke({
    name: `${bnd}/echo`,
    blocking: true,
    result: true,
    params: { c: 'payload' },
  });
  const bindingOfBinding = await attempt(
    ow.packages.create({ name: name('compat-bb'), package: { binding: { namespace: 'guest', name: bnd } } }),
  );
  const toMissing = await attempt(
    ow.packages.create({ name: name('compat-bm'), package: { binding: { namespace: 'guest', name: 'nope' } } }),
  );
  await ow.packages.delete({ name: bnd });
  await ow.actions.delete({ name: `${pkg}/echo` });
  await ow.packages.delete({ name: pkg });
  return { pkg, bound, got, invoked, bindingOfBinding, toMissing };
});
