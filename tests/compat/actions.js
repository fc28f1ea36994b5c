// Actions through the official client: create, duplicate create, get, list, update,
// invoke (result only and full record), delete, and what it rejects with afterwards.
'use strict';

const { client, name, attempt, run } = require('./common');

const V1 = "function main(args) { return { v: 1, who: args.who || 'nobody' }; }";
const V2 = 'function main(args) { return { v: 2, greeting: args.greeting }; }';

run(async () => {
  const ow = client();
  const act = name('compat-action');

  const created = await ow.actions.create({ name: act, action: V1 });
  const duplicate = await attempt(ow.actions.create({ name: act, action: V1 }));
  const got = await ow.actions.get({ name: act });
  const withoutCode = await ow.actions.get({ name: act, code: false });
  const listed = await ow.actions.list({ limit: 200 });
  const v1Result = await ow.actions.invoke({
    name: act,
    blocking: true,
    result: true,
    params: { who: 'the client' },
  });
  const updated = await ow.actions.update({ name: act, action: V2, params: { greeting: 'hi' } });
  const v2Result = await ow.actions.invoke({ name: act, blocking: true, result: true });
  const v2Record = await ow.actions.invoke({ name: act, blocking: true });
  const deleted = await ow.actions.delete({ name: act });
  const getAfterDelete = await attempt(ow.actions.get({ name: act }));
  const invokeAfterDelete = await attempt(ow.actions.invoke({ name: act, blocking: true }));
  const deleteAfterDelete = await attempt(ow.actions.delete({ name: act }));

  return {
    name: act,
    created,
    duplicate,
    got,
    withoutCode,
    listedNames: listed.map((a) => a.name),
    v1Result,
    updated,
    v2Result,
    v2Record,
    deleted,
    getAfterDelete,
    invokeAfterDelete,
    deleteAfterDelete,
  };
});
