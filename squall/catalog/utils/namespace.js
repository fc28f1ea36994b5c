// /whisk.system/utils/namespace: the namespace the action runs for, i.e. the invoker's
// (an action of a published package runs in the caller's namespace).
function main() {
  return { namespace: process.env.__OW_NAMESPACE };
}
