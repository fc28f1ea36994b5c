// /whisk.system/samples/cat: the `lines` array as text, each element on a line of its
// own (every line ends with a newline).
function main(params) {
  if (!Array.isArray(params.lines)) {
    return { error: 'You must specify a lines parameter!' };
  }
  const payload = params.lines.map((line) => `${line}\n`).join('');
  return { lines: params.lines, payload: payload };
}
