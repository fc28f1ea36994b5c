// The API gateway through the official client: routes.create (GET and POST on a path with
// a parameter, as http web actions; a JSON route with an API name), routes.list and
// routes.get (by base path and by name), calls through the gateway URLs it answered,
// a refused create, and routes.delete of one verb, then of the whole API.
'use strict';

const { client, name, attempt, run } = require('./common');

// Answers an HTTP response echoing what the web action was given.
const ECHO_HTTP = 'function main(args) { return {statusCode: 200, body: args}; }';
const HELLO = "function main(args) { return {payload: 'Hello ' + (args.name || 'world')}; }";

// A call through the gateway: status, content type and the parsed JSON body.
async function call(url, init) {
  const response = await fetch(url, init);
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    cors: response.headers.get('access-control-allow-origin'),
    body: await response.json(),
  };
}

run(async () => {
  const ow = client();
  const books = name('compat-books');
  const hello = name('compat-hello');
  const basepath = `/${name('club')}`;
  const web = { 'web-export': true };
  await ow.actions.create({ name: books, action: ECHO_HTTP, annotations: web });
  await ow.actions.create({ name: hello, action: HELLO, annotations: web });

  const createdGet = await ow.routes.create({
    basepath,
    relpath: '/books/{isbn}',
    operation: 'GET',
    action: books,
    responsetype: 'http',
  });
  const createdPost = await ow.routes.create({
    basepath,
    relpath: '/books/{isbn}',
    operation: 'POST',
    action: books,
    responsetype: 'http',
  });
  const helloBase = `/${name('hello')}`;
  const createdHello = await ow.routes.create({
    name: 'Hello API',
    basepath: helloBase,
    relpath: '/world',
    operation: 'GET',
    action: hello,
  });
  const refused = await attempt(
    ow.routes.create({
      basepath,
      relpath: '/pages/{n}',
      operation: 'GET',
      action: books,
      responsetype: 'json',
    }),
  );

  const listed = await ow.routes.list();
  const got = await ow.routes.get({ basepath });
  const gotByName = await ow.routes.get({ name: 'Hello API' });

  const gotIsbn = await call(`${createdGet.gwApiUrl}/books/978-0596517748?q=1`);
  const posted = await call(`${createdPost.gwApiUrl}/books/42`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Dune' }),
  });
  const world = await call(`${createdHello.gwApiUrl}/world?name=Squall`);

  const deletedPost = await ow.routes.delete({ basepath, relpath: '/books/{isbn}', operation: 'POST' });
  const postAfter = await fetch(`${createdPost.gwApiUrl}/books/42`, { method: 'POST' });
  const gotAfterVerb = await ow.routes.get({ basepath });
  const deleted = await ow.routes.delete({ basepath });
  const getAfter = await fetch(`${createdGet.gwApiUrl}/books/1`);
  const listedAfter = await ow.routes.list({ basepath });
  const deleteMissing = await attempt(ow.routes.delete({ basepath }));
  await ow.routes.delete({ basepath: helloBase });
  await ow.actions.delete({ name: books });
  await ow.actions.delete({ name: hello });

  return {
    books,
    hello,
    basepath,
    helloBase,
    createdGet,
    createdPost,
    createdHello,
    refused,
    listed,
    got,
    gotByName,
    gotIsbn,
    posted,
    world,
    deletedPost,
    postAfterStatus: postAfter.status,
    gotAfterVerb,
    deleted,
    getAfterStatus: getAfter.status,
    listedAfter,
    deleteMissing,
  };
});
