// /whisk.system/utils/cat: joins the `lines` array into one string (`payload`), one
// element per line, and passes the lines on.
function main(params) {
  const lines = params.lines || [];
  const result = { lines: lines, payload: lines.join('\n') };
  console.log('cat: returning ' + JSON.stringify(result));
  return result;
}
