// /whisk.system/utils/head: the first `num` elements (default 1) of the `lines` array.
function main(params) {
  const lines = params.lines || [];
  const num = params.num || 1;
  const first = lines.slice(0, num);
  console.log('head get first ' + num + ' lines of ' + lines + ': ' + first);
  return { lines: first, num: num };
}
