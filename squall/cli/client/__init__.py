"""The ``wsk``-style client:
``squall action|activation|api|namespace|package|property|rule|trigger``.

Shared pieces, usable from Python as well as from the commands:

- :mod:`.config` — the wskprops file and the resolved :class:`~.config.ClientConfig`;
- :mod:`.http` — :class:`~.http.WhiskClient`, the REST client (server errors become
  :class:`~.errors.ClientError` with the server's message and a named exit code);
- :mod:`.params` — ``-p KEY VALUE`` / ``-P FILE`` parsing;
- :mod:`.names` — qualified entity names (``/ns/pkg/name``);
- :mod:`.output` — ``ok:`` lines, tables and JSON (rich on a terminal, plain otherwise);
- :mod:`.exits` — the exit codes.

One module per command group builds on them.
"""
