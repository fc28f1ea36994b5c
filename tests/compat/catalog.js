// The standard catalog through the official client, as the client's own integration tests
// and its users use it: invoke /whisk.system/utils/sort by its full name, create (and
// invoke) a sequence of /whisk.system/utils/echo, bind a rule to /whisk.system/utils/echo
// and fire its trigger; and list the packages of /whisk.system.
'use strict';

const { client, name, untilFinal, run } = require('./common');

const ECHO = '/whisk.system/utils/echo';

run(async () => {
  const ow = client();
  const seq = name('compat-echo-seq');
  const trigger = name('compat-echo-trigger');
  const rule = name('compat-echo-rule');

  const sorted = await ow.actions.invoke({
    actionName: '/whisk.system/utils/sort', blocking: true, params: { lines: [4, 2, 3] },
  });

  const seqCreated = await ow.actions.create({ actionName: seq, sequence: [ECHO] });
  const seqGot = await ow.actions.get({ actionName: seq });
  const seqResult = await ow.actions.invoke({
    actionName: seq, blocking: true, result: true, params: { hello: 'world' },
  });
  await ow.actions.delete({ actionName: seq });

  await ow.triggers.create({ triggerName: trigger });
  const ruleCreated = await ow.rules.create({ ruleName: rule, action: ECHO, trigger });
  const fired = await ow.triggers.invoke({ triggerName: trigger, params: { fired: true } });
  const triggerRecord = await untilFinal(() => ow.activations.get({ name: fired.activationId }));
  const echoId = JSON.parse(triggerRecord.logs[0]).activationId;
  const echoRecord = await untilFinal(() => ow.activations.get({ name: echoId }));
  await ow.rules.delete({ ruleName: rule });
  await ow.triggers.delete({ triggerName: trigger });

  const systemPackages = await ow.packages.list({ namespace: 'whisk.system' });
  const utils = await ow.packages.get({ name: '/whisk.system/utils' });

  return {
    sorted, seq, seqCreated, seqGot, seqResult, rule, ruleCreated, fired, triggerRecord,
    echoRecord, systemPackages, utils,
  };
});
