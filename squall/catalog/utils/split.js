// /whisk.system/utils/split: splits the string `payload` at `separator` (a string; by
// default at each line end) into `lines`. Without a payload the action fails, as
// OpenWhisk's does.
function main(params) {
  const separator = params.separator || /\r?\n/;
  const text = params.payload.toString();
  const result = { lines: text.split(separator), payload: params.payload };
  console.log('split: returning ' + JSON.stringify(result));
  return result;
}
