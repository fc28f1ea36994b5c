// /whisk.system/utils/echo: the result is the action's input, unchanged.
function main(params) {
  return params || {};
}
