"""The zygote's start path of the process sandbox: containers forked from a warm
interpreter (:mod:`squall.sandbox.zygote`), one zygote per tenant and Python kind
(:mod:`squall.sandbox.zygotes`). Mixed into
:class:`~squall.sandbox.process.ProcessContainerFactory`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from squall.errors import ContainerError
from squall.sandbox.container import ProcessContainer
from squall.sandbox.forkedruntime import ForkedRuntime
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.isolation import SandboxInit
from squall.sandbox.logs import LogCollector
from squall.sandbox.processbase import SOCKET_NAME, ProcessFactoryBase
from squall.sandbox.zygote import SPARES_DIRECTORY, Zygote
from squall.sandbox.zygoteprocess import script_path

log = logging.getLogger(__name__)


class ZygoteStarts(ProcessFactoryBase):
    """Starting, using and closing the tenants' zygotes."""

    @property
    def zygote(self) -> Zygote | None:
        """The most recently used running zygote, if any (see :meth:`zygote_of`)."""
        return self._zygotes.latest

    def zygote_of(self, tenant: str, kind: str | None = None) -> Zygote | None:
        """The zygote of ``tenant`` for ``kind`` (default: ``zygote_kind``), if it runs
        (started on its first create of that kind)."""
        return self._zygotes.get(tenant, kind or self.zygote_kind)

    async def _start_zygote(self, tenant: str, kind: str) -> Zygote | None:
        """A new zygote for ``tenant``'s containers of ``kind``, on that kind's
        interpreter and library set (None, with a warning, when it cannot start)."""
        confinement = self._confinement
        assert confinement is not None
        argv, binds = self._argv(kind)
        argv[-1] = str(script_path(Path(argv[-1])))
        zygote = Zygote(
            argv=argv,
            binds=binds,
            sandbox=confinement.sandbox,
            isolation=confinement.isolation,
            cgroups=confinement.cgroups,
            start_timeout=self._start_timeout,
            spares=self._zygote_spares,
            network=self.network,
            spare_network=self._network_default,
            supervisor=confinement.supervisor,
            uid=confinement.uids.take() if confinement.uids is not None else None,
            workdir=self.workdir,
            environment=lambda network: self._environment(kind, self.workdir, {}, {}, network),
            log_cap_bytes=self._log_cap_bytes,
        )
        try:
            await zygote.start()
        except ContainerError as ex:
            log.warning("%s; %s containers start as usual", ex.message, kind)
            self._close_zygote_uid(zygote)
            return None
        log.info("started a %s zygote for namespace %s", kind, tenant)
        return zygote

    def _close_zygote_uid(self, zygote: Zygote) -> None:
        """Give a closed zygote's uid back (its processes and containers are gone), and
        remove the spares' directory once no zygote has a spare there (not to be taken for
        a leftover by the next factory on this directory)."""
        with contextlib.suppress(OSError):  # absent, or another zygote's spares wait there
            (self.workdir / SPARES_DIRECTORY).rmdir()
        uids = self._confinement.uids if self._confinement is not None else None
        if zygote.uid is not None and uids is not None:
            uids.give_back(zygote.uid)
            zygote.uid = None

    async def _fork(
        self,
        zygote: Zygote,
        kind: str,
        container_id: str,
        memory_mb: int,
        directory: Path,
        env: Mapping[str, str] | None,
        network: bool,
    ) -> ProcessContainer:
        """A container of ``kind`` (the zygote's) forked by the zygote (see
        :mod:`squall.sandbox.zygote`): a started spare taken, serving as soon as this
        returns (no readiness to wait for), in ``directory``, which the zygote makes (it
        must not exist yet)."""
        environment = self._environment(kind, directory, env or {}, {}, network)
        spare = await zygote.take(memory_mb, environment, network, directory)
        sandbox = SandboxInit(spare.pid, spare.pidfd)
        ours = spare.fds
        connection, spare.connection = spare.connection, None
        try:
            if spare.runtime is not None and spare.logs is not None and spare.exited is not None:
                # A started spare's exit and output were watched while it waited.
                runtime, logs, exited = spare.runtime, spare.logs, spare.exited
            else:  # one forked on the spot
                logs = LogCollector(self._log_cap_bytes)
                exited = asyncio.get_running_loop().create_future()
                runtime = ForkedRuntime(spare.pid, logs, exited)
                for stream in ("stdout", "stderr"):
                    await runtime.attach(stream, ours.pop(stream))
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)
            os.close(spare.pidfd)
            for fd in ours.values():
                os.close(fd)
            if connection is not None:
                connection[1].close()
            await spare.cgroup.aremove()
            if spare.lease is not None and self.network is not None:
                await self.network.detach(spare.lease)
            raise
        container = ProcessContainer(
            container_id=container_id,
            kind=kind,
            memory_mb=memory_mb,
            directory=directory,
            transport=runtime,
            logs=logs,
            exited=exited,
            http=UnixHttpClient(
                directory / SOCKET_NAME,
                max_response_bytes=self._max_response_bytes,
                connection=connection,  # made while it waited: /init connects nothing
            ),
            lifeline=ours.pop("lifeline"),
            cgroup=spare.cgroup,
            on_destroyed=self._forget,
            pipelines=True,  # the Python proxy: /init and the first /run in one write
        )
        container.sandbox = sandbox
        if spare.lease is not None:
            self._leases[container_id] = spare.lease
        return container  # its pid file is in ``directory`` already (Spare.go)
