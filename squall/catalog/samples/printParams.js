// /whisk.system/samples/printParams: logs the parameters sorted by name, and returns
// them, in that order, under `params`.
function main(params) {
  const sorted = {};
  Object.keys(params).sort().forEach((key, i) => {
    console.log((i === 0 ? '' : ' ') + 'params.' + key + ':', params[key]);
    sorted[key] = params[key];
  });
  return { params: sorted };
}
