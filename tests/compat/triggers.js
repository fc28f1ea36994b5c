// Triggers, rules and an alarms feed through the official client: create a trigger with a
// parameter and a rule to an echo action, fire it and read both records, disable (a fire
// is then 204), enable, a rule to a missing action, delete the rule; then a trigger with
// the interval feed: feeds.create, feeds.get, a refused update, feeds.delete.
'use strict';

const { client, name, attempt, untilFinal, run } = require('./common');

const ECHO = 'function main(args) { return args; }';
const INTERVAL = '/whisk.system/alarms/interval';

// What the client resolves an answer without a body to (204 of a fire without active
// rules): nothing, or an empty buffer.
function empty(value) {
  return value === undefined || value === '' || (Buffer.isBuffer(value) && value.length === 0);
}

// What the client resolved a non-JSON answer to (200 "OK" of a rule status), as JSON.
function shown(value) {
  return Buffer.isBuffer(value) ? { buffer: value.toString('utf8') } : value;
}

run(async () => {
  const ow = client();
  const trigger = name('compat-trigger');
  const action = name('compat-echo');
  const rule = name('compat-rule');

  const triggerCreated = await ow.triggers.create({
    name: trigger,
    trigger: { parameters: [{ key: 'from', value: 'trigger' }] },
  });
  await ow.actions.create({ name: action, action: ECHO });
  const ruleCreated = await ow.rules.create({ name: rule, action, trigger });
  const fired = await ow.triggers.invoke({ name: trigger, params: { n: 1 } });
  const triggerRecord = await untilFinal(() => ow.activations.get({ name: fired.activationId }));
  const actionId = JSON.parse(triggerRecord.logs[0]).activationId;
  const actionRecord = await untilFinal(() => ow.activations.get({ name: actionId }));

  const disabled = await ow.rules.disable({ name: rule });
  const gotDisabled = await ow.rules.get({ name: rule });
  const firedInactive = await ow.triggers.invoke({ name: trigger, params: {} });
  const enabled = await ow.rules.enable({ name: rule });
  const gotEnabled = await ow.rules.get({ name: rule });
  const missingAction = await attempt(
    ow.rules.create({ name: name('compat-bad'), action: name('compat-none'), trigger }),
  );
  const ruleDeleted = await ow.rules.delete({ name: rule });
  const triggerAfter = await ow.triggers.get({ name: trigger });
  const firedWithoutRules = await ow.triggers.invoke({ name: trigger });
  const triggerDeleted = await ow.triggers.delete({ name: trigger });
  await ow.actions.delete({ name: action });

  const feedTrigger = name('compat-alarm');
  await ow.triggers.create({
    name: feedTrigger,
    trigger: { annotations: [{ key: 'feed', value: INTERVAL }] },
  });
  const feed = { name: INTERVAL, trigger: feedTrigger };
  const feedCreated = await ow.feeds.create({
    ...feed,
    params: { minutes: 1, trigger_payload: { beat: 1 } },
  });
  const feedRead = await ow.feeds.get(feed);
  const feedBadUpdate = await attempt(ow.feeds.update({ ...feed, params: { minutes: 0.5 } }));
  const feedDeleted = await ow.feeds.delete(feed);
  const feedReadAfterDelete = await attempt(ow.feeds.get(feed));
  await ow.triggers.delete({ name: feedTrigger });

  return {
    trigger,
    action,
    rule,
    feedTrigger,
    triggerCreated,
    ruleCreated,
    fired,
    triggerRecord,
    actionRecord,
    disabled: shown(disabled),
    gotDisabled,
    firedInactive: empty(firedInactive),
    enabled: shown(enabled),
    gotEnabled,
    missingAction,
    ruleDeleted,
    triggerAfter,
    firedWithoutRules: empty(firedWithoutRules),
    triggerDeleted,
    feedCreated,
    feedRead,
    feedBadUpdate,
    feedDeleted,
    feedReadAfterDelete,
  };
});
