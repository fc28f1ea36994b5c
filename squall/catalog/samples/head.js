// /whisk.system/samples/head: the first `num` elements (default 1; a fraction is cut to
// its whole part) of the `lines` array.
function main(params) {
  if (!Array.isArray(params.lines)) {
    return { error: 'You must specify a lines parameter!' };
  }
  const num = typeof params.num === 'number' ? Math.trunc(params.num) : 1;
  return { lines: params.lines.slice(0, num), num: num };
}
