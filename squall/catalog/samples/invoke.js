// /whisk.system/samples/invoke: invokes /whisk.system/utils/date (blocking) through the
// platform's API, as the invoking namespace, logs the date it answered, and returns the
// whole answer: date's activation record (or {activationId} when date did not finish in
// time for a blocking answer, in which case there is no date to log).
const openwhisk = require('openwhisk');

function main(params) {
  const ow = openwhisk({ ignore_certs: params.ignore_certs || false });
  return ow.actions.invoke({ name: '/whisk.system/utils/date', blocking: true }).then((answer) => {
    const date = answer && answer.response && answer.response.result
      ? answer.response.result.date
      : undefined;
    if (typeof date === 'string') {
      console.log('It is now ' + date);
    } else {
      console.log('Could not parse the date of the response.');
    }
    return answer;
  });
}
