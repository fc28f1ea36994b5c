// /whisk.system/utils/date: the current date and time (ISO 8601, UTC, in the result).
function main() {
  const now = new Date();
  console.log('It is now ' + now);
  return { date: now };
}
