// The seed's hello.js through the official client: create, invoke blocking, read the logs.
'use strict';

const { client, name, run } = require('./common');

const HELLO = "function main() {\n  console.log('Hello World');\n  return { hello: 'world' };\n}\n";

run(async () => {
  const ow = client();
  const act = name('helloAction');
  await ow.actions.create({ name: act, action: HELLO });
  const result = await ow.actions.invoke({ name: act, blocking: true, result: true });
  const record = await ow.actions.invoke({ name: act, blocking: true });
  const logs = await ow.activations.logs({ activationId: record.activationId });
  await ow.actions.delete({ name: act });
  return { result, record, logs };
});
