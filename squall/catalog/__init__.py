"""The standard catalog: the public packages of ``whisk.system`` every installation has.

``/whisk.system/utils`` and ``/whisk.system/samples`` (:mod:`squall.catalog.manifest`,
with one Node.js source per action beside it) are installed at start-up by standalone and
by every controller of a cluster (:func:`squall.catalog.install.install_catalog`),
idempotently and safely when several controllers start together. The alarms package,
``/whisk.system/alarms``, is installed the same way by :mod:`squall.feeds`.
"""
