// Authentication as the official client surfaces it: a wrong key (401) and another
// namespace (403), both as rejections carrying OpenWhisk's status and message.
'use strict';

const openwhisk = require('openwhisk');
const { client, attempt, run } = require('./common');

run(async () => {
  const [uuid, key] = process.env.SQUALL_AUTH.split(':');
  const wrongKey = openwhisk({
    apihost: process.env.SQUALL_APIHOST,
    api_key: `${uuid}:${'x'.repeat(key.length)}`,
  });
  const ow = client();
  return {
    wrongKey: await attempt(wrongKey.actions.list()),
    otherNamespace: await attempt(ow.actions.list({ namespace: 'someone-else' })),
    ownNamespace: await attempt(ow.namespaces.list()),
  };
});
