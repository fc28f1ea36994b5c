// /whisk.system/utils/hosturl: the URL that activates an action (`path`: name or
// package/name) or a trigger (`trigger: true`) of the caller's namespace, through the
// REST API or, with `web: true`, as a web action with the extension `ext`.
const WEB_EXTENSIONS = ['.html', '.http', '.json', '.svg', '.text'];

function main(args) {
  const host = process.env.__OW_API_HOST;
  const namespace = process.env.__OW_NAMESPACE;
  const web = args.web === true;
  const collection = args.trigger === true ? 'triggers' : 'actions';
  const base = web
    ? `${host}/api/v1/web/${namespace}`
    : `${host}/api/v1/namespaces/${namespace}/${collection}`;

  if (web && args.trigger) {
    return { error: 'triggers are not allowed for web actions.' };
  }
  if (web && args.ext && !WEB_EXTENSIONS.includes(args.ext)) {
    return { error: 'extension for web action must be one of [".html", ".http", ".json", ".svg", ".text"].' };
  }
  if (!web && args.trigger && args.path.indexOf('/') !== -1) {
    return { error: 'triggers are not allowed in packages.' };
  }
  if (!args.path) {
    return { url: base };
  }
  // A web action outside a package is addressed through the `default` package.
  const path = web && args.path.indexOf('/') === -1 ? `default/${args.path}` : args.path;
  const ext = web ? (args.ext || '') : '';
  return { url: `${base}/${path}${ext}` };
}
