"""The bubblewrap start path of the process sandbox: a runtime started by the supervisor
in a sandbox of its own (:mod:`squall.sandbox.supervisor`, :mod:`squall.sandbox.bwrap`,
:mod:`squall.sandbox.isolation`), or, without isolation, as a plain child process. Mixed
into :class:`~squall.sandbox.process.ProcessContainerFactory`.

A true cold start's path is kept to what only it can do: bubblewrap is born in the
container's cgroup (no move, and no RCU grace period, afterwards), in a network namespace
prepared with its link when one is ready (:meth:`SandboxNetwork.take_prepared
<squall.sandbox.network.SandboxNetwork.take_prepared>`; else the link is attached while
bubblewrap waits on its block pipe, as before) — with such a namespace, or none, it does
not wait for the invoker at all — and the CPython proxy is imported from cached bytecode
(:meth:`~squall.sandbox.processbase.ProcessFactoryBase._started_argv`). The invoker's
first connection to the runtime is made right after the factory's listening socket, before
the spawn: it waits in the socket's backlog while the sandbox starts, and the runtime
accepts it when it listens, so neither a true cold start's /init nor a stem cell's pays a
connect, a loop iteration for the stream's transport, or the runtime's accept (a zygote's
started spare does the same, :mod:`squall.sandbox.spare`)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from squall.errors import ContainerError
from squall.runtimes import family
from squall.sandbox import launch
from squall.sandbox.cgroups import Cgroup, Limits
from squall.sandbox.container import ProcessContainer, RuntimeProcess
from squall.sandbox.forkedruntime import ForkedRuntime
from squall.sandbox.http import UnixHttpClient
from squall.sandbox.isolation import confine
from squall.sandbox.logs import LogCollector
from squall.sandbox.network import SandboxNetwork
from squall.sandbox.processbase import SOCKET_NAME, Confinement, ProcessFactoryBase
from squall.sandbox.zygoteprocess import SPARE_CPU_SHARES

#: A stem cell's CPU weight until its first ``/init`` (the least there is, as a zygote's
#: spare until taken): its start (≈ 50 ms of CPU for Node.js: bubblewrap, ``node``) and
#: its idle warm-up use the CPU that the containers at work leave, instead of competing
#: with them — above all with a burst's cold starts while the pool refills its cells.
IDLE_CPU_SHARES = SPARE_CPU_SHARES


class SandboxStarts(ProcessFactoryBase):
    """Starting one runtime through bubblewrap (or as a plain process)."""

    async def _start(
        self,
        container_id: str,
        kind: str,
        memory_mb: int,
        directory: Path,
        env: Mapping[str, str],
        network: SandboxNetwork | None,
        idle: bool = False,
    ) -> ProcessContainer:
        loop = asyncio.get_running_loop()
        # Node.js with concurrency > 1 writes no sentinels; the Python proxy always does.
        concurrent = int(env.get("__OW_CONCURRENCY", "1") or "1") > 1
        logs = LogCollector(self._log_cap_bytes, split=not concurrent or family(kind) != "nodejs")
        exited: asyncio.Future[None] = loop.create_future()
        argv, binds = self._started_argv(kind)
        confinement = self._confinement
        cgroup = None
        uid = None
        # A network namespace made ahead with its link, if one is ready: then nothing of
        # the network is left for the start's path (see squall.sandbox.network).
        prepared = None
        if confinement is not None:
            limits = confinement.isolation.limits(memory_mb)
            if idle:
                # A stem cell waits as a zygote's spare does: its start and warm-up
                # yield to the containers at work; its first /init writes its own weight.
                waiting = Limits(limits.memory_bytes, limits.pids, IDLE_CPU_SHARES)
                cgroup = confinement.cgroups.create(container_id, waiting)
            else:
                cgroup = confinement.cgroups.create(container_id, limits)
            uid = confinement.uids.take() if confinement.uids is not None else None
            if network is not None:
                prepared = network.take_prepared()
            if prepared is not None:
                self._leases[container_id] = prepared.lease  # detached with the container
        # Descriptors the child inherits (in this order: 3, 4, ... in a sandbox), and the
        # parent's ends it keeps.
        child_fds: list[int] = []
        keep: dict[str, int] = {}
        transport: RuntimeProcess
        # The first connection, made before the runtime exists (see the module docstring):
        # a Unix connect completes at once while the backlog has room.
        ahead: socket.socket | None = None
        try:
            listener = launch.listen(directory)
            child_fds.append(listener.detach())
            ahead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            launch.at_path(ahead.connect, directory, SOCKET_NAME)
            keep["ready"], ready_w = os.pipe()
            lifeline_r, keep["lifeline"] = os.pipe()
            child_fds += [ready_w, lifeline_r]
            fds = {"LISTEN": child_fds[0], "READY": ready_w, "LIFELINE": lifeline_r}
            if confinement is None:
                environment = self._environment(kind, directory, env, fds, network is not None)
                try:
                    transport, _ = await loop.subprocess_exec(
                        lambda: launch.RuntimeProtocol(logs, exited),
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        env=environment,
                        cwd=directory,
                        start_new_session=True,
                        pass_fds=child_fds,
                    )
                except OSError as ex:
                    raise ContainerError(f"cannot start the {kind} runtime: {ex}") from ex
            else:
                keep["info"], info_w = os.pipe()
                child_fds.append(info_w)
                block_fd = None
                if network is not None and prepared is None:
                    # Held until its link is attached (see confine); otherwise, born in its
                    # cgroup with its limits, it has nothing to wait for: its mounts and
                    # the runtime's start overlap the invoker's reading of its pid.
                    block_r, keep["block"] = os.pipe()
                    child_fds.append(block_r)
                    block_fd = 3 + child_fds.index(block_r)
                inside = {name: 3 + child_fds.index(fd) for name, fd in fds.items()}
                environment = self._environment(kind, directory, env, inside, network is not None)
                argv = confinement.sandbox.command(
                    argv,
                    binds=binds,
                    tmp_bytes=confinement.isolation.tmp_bytes(memory_mb),
                    info_fd=3 + child_fds.index(info_w),
                    block_fd=block_fd,
                    own_network=prepared is None,
                )
                netns = None if prepared is None else prepared.fd
                transport = await self._spawn(
                    confinement, argv, environment, child_fds, uid, logs, exited, cgroup, netns
                )
        except BaseException:
            if ahead is not None:
                ahead.close()
            for fd in keep.values():
                os.close(fd)
            if prepared is not None:
                self._forget_lease(container_id)
            if cgroup is not None:
                cgroup.remove(timeout=0)
            if uid is not None and confinement is not None and confinement.uids is not None:
                confinement.uids.give_back(uid)
            raise
        finally:
            for fd in child_fds:  # the child holds the only copies now (EOF = it died)
                os.close(fd)
            if prepared is not None:  # the sandbox is in it now (or never will be)
                os.close(prepared.fd)
        if uid is not None:
            self._uids[container_id] = uid
        assert ahead is not None  # made in the try above, or it raised
        # Nothing awaits from the spawn to the try that destroys the container on any
        # failure: a cancellation here would leak the runtime, its descriptors, cgroup,
        # uid and lease. The client owns ``ahead`` from here (closed with it).
        http = UnixHttpClient(
            directory / SOCKET_NAME,
            max_response_bytes=self._max_response_bytes,
            sock=ahead,  # connected before the spawn: /init connects nothing
        )
        container = ProcessContainer(
            container_id=container_id,
            kind=kind,
            memory_mb=memory_mb,
            directory=directory,
            transport=transport,
            logs=logs,
            exited=exited,
            http=http,
            lifeline=keep.pop("lifeline"),
            cgroup=cgroup,
            on_destroyed=self._forget,
            # The Python and Node.js proxies take /init and the first /run written together.
            pipelines=family(kind) in ("python", "nodejs"),
        )
        if idle and confinement is not None and cgroup is not None:
            container.weigh_on_initialize(limits.cpu_shares)
        ready_r = keep.pop("ready")
        try:
            launch.write_pid_file(directory, container.pid)
            # Its transport takes a loop iteration, while the sandbox starts anyway.
            await http.adopt_ahead()
            if confinement is not None and cgroup is not None:

                async def connect(pid: int) -> None:
                    if network is not None and prepared is None:
                        self._leases[container_id] = await network.attach(pid)

                block = keep.pop("block", None)
                try:
                    container.sandbox = await confine(
                        container.pid,
                        keep.pop("info"),
                        block,
                        cgroup,
                        None,  # set when it was spawned
                        self._start_timeout,
                        connect if block is not None else None,
                    )
                except ContainerError as ex:
                    await logs.wait_closed(1.0)  # bubblewrap's last words say why
                    said = logs.text("stderr").strip()
                    reason = f"{ex.message} ({said})" if said else ex.message
                    raise ContainerError(f"the {kind} runtime did not start: {reason}") from ex
            ready = await launch.wait_ready(ready_r, self._start_timeout)
        except BaseException:
            await container.destroy()  # before the block pipe closes and lets it run
            for fd in keep.values():
                os.close(fd)
            raise
        finally:
            os.close(ready_r)
        if not ready:
            await logs.wait_closed(1.0)
            await container.destroy()
            reason = logs.text("stderr") or "it exited or hung before listening"
            raise ContainerError(f"the {kind} runtime did not start: {reason}")
        return container

    async def _spawn(
        self,
        confinement: Confinement,
        argv: list[str],
        environment: Mapping[str, str],
        fds: list[int],
        uid: int | None,
        logs: LogCollector,
        exited: asyncio.Future[None],
        cgroup: Cgroup | None,
        netns: int | None = None,
    ) -> ForkedRuntime:
        """Start a sandbox through the supervisor, born in ``cgroup`` and in the network
        namespace ``netns`` if given; its output goes to ``logs``."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            spawned = await confinement.supervisor.spawn(
                argv,
                environment,
                stdout=out_w,
                stderr=err_w,
                fds=fds,
                uid=uid,
                nofile=confinement.isolation.nofile,
                cgroup=None if cgroup is None else cgroup.procs_files,
                netns=netns,
            )
        except ContainerError as ex:
            os.close(out_w)
            os.close(err_w)
            os.close(out_r)
            os.set_blocking(err_r, False)
            try:  # its last words say why, if it wrote them already
                reason = os.read(err_r, 4096).decode(errors="replace").strip()
            except BlockingIOError:
                reason = ""
            finally:
                os.close(err_r)
            raise ContainerError(f"{ex.message}: {reason}" if reason else ex.message) from ex
        except BaseException:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            raise
        os.close(out_w)
        os.close(err_w)
        runtime = ForkedRuntime(spawned.pid, logs, exited, pidfd=spawned.pidfd)
        await runtime.attach("stdout", out_r)
        await runtime.attach("stderr", err_r)
        return runtime
