// /whisk.system/samples/countdown: counts down from `n` by invoking itself (non-blocking)
// with n - 1, through the platform's API as the invoking namespace (the `openwhisk` npm
// client reads __OW_API_HOST and __OW_API_KEY, so the action needs provide-api-key).
// Each activation logs its n; the one for 0 also logs 'Happy New Year!'. The result is
// the answer to the next invocation ({activationId}), or {} once the count is over (or
// when n is not a number).
const openwhisk = require('openwhisk');

function main(params) {
  const n = parseInt(params.n, 10);
  console.log(n);
  if (n === 0) {
    console.log('Happy New Year!');
    return {};
  }
  if (!(n > 0)) {
    return {};
  }
  const ow = openwhisk({ ignore_certs: params.ignore_certs || false });
  // __OW_ACTION_NAME is this action's full name, /whisk.system/samples/countdown (or a
  // binding's): the next step runs the same action, in the same namespace.
  return ow.actions.invoke({ name: process.env.__OW_ACTION_NAME, params: { n: n - 1 } });
}
