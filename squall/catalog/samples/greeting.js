// /whisk.system/samples/greeting: a greeting for `name` (or `payload`) from `place`.
function main(params) {
  console.log('params:', params);
  const name = params.name || params.payload || 'stranger';
  const place = params.place || 'somewhere';
  return { payload: 'Hello, ' + name + ' from ' + place + '!' };
}
