// /whisk.system/utils/sort: sorts the `lines` array with JavaScript's default order
// (elements compared as strings, so 10 comes before 9) and counts it.
function main(params) {
  const lines = params.lines || [];
  console.log('sort input msg: ' + JSON.stringify(params));
  console.log('sort before: ' + lines);
  lines.sort();
  console.log('sort after: ' + lines);
  return { lines: lines, length: lines.length };
}
