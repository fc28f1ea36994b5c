// /whisk.system/samples/helloPromises: a greeting as an array of words, to show an action
// answering with a promise. It invokes /whisk.system/samples/greeting (blocking) with
// `name` and `place` through the platform's API, as the invoking namespace, and splits
// the greeting's payload at spaces.
const openwhisk = require('openwhisk');

function main(params) {
  const ow = openwhisk({ ignore_certs: params.ignore_certs || false });
  return ow.actions
    .invoke({
      name: '/whisk.system/samples/greeting',
      params: { name: params.name, place: params.place },
      blocking: true,
    })
    .then((activation) => {
      console.log('activation:', activation);
      const payload = String(activation.response.result.payload);
      return { lines: payload.split(' ') };
    });
}
