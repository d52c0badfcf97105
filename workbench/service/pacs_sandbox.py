"""A real PACS for rehearsals, tests and ``bench serve``: Orthanc (Debian package ``orthanc``) on loopback.

Orthanc 1.10 has no setting for the address it binds: it listens on every interface. A test bed must not, so
Orthanc is started with a small ``LD_PRELOAD`` shim (C, compiled here once with the system's ``cc`` and cached)
that turns a bind to the wildcard address into a bind to 127.0.0.1 (::1 for IPv6); ``listening_addresses``
checks the result from the process's own sockets. HTTP remote access is off and the REST API is used through
``urllib`` with bounded timeouts. The process is stopped by its PID.

    with OrthancSandbox(folder, modalities={"workbench": ("WORKBENCH", 11112)}) as pacs:
        pacs.upload(path)                  # POST /instances
        pacs.send("workbench", [study_id]) # POST /modalities/workbench/store (Orthanc's C-STORE SCU)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
from pathlib import Path

from federated.poc import free_port
from workbench.atomic import write_text
from workbench.errors import WorkbenchError
from workbench.service.pacs_client import OrthancClient

ORTHANC = "Orthanc"
START_TIMEOUT_S = 30.0

LOOPBACK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

/* bind() to the wildcard address becomes bind() to loopback: the PACS test bed is reachable from this host only */
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t) = 0;
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) a.sin6_addr = in6addr_loopback;
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real_bind(fd, addr, len);
}
"""


def available() -> str | None:
    """Why a sandbox cannot start here (no Orthanc, no C compiler), or None when it can."""
    if shutil.which(ORTHANC) is None and not Path("/usr/sbin/Orthanc").is_file():
        return "Orthanc is not installed (Debian: apt-get install orthanc)"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler for the loopback shim (Debian: apt-get install gcc)"
    return None


def loopback_shim(cache: Path | None = None) -> Path:
    """The compiled shim (cached by the source's hash)."""
    cache = cache or Path.home() / ".cache" / "workbench"
    digest = hashlib.sha256(LOOPBACK_SHIM.encode()).hexdigest()[:12]
    so = cache / f"loopback_bind-{digest}.so"
    if so.is_file():
        return so
    cache.mkdir(parents=True, exist_ok=True)
    src = cache / f"loopback_bind-{digest}.c"
    write_text(src, LOOPBACK_SHIM)
    cc = shutil.which("cc") or shutil.which("gcc") or "cc"
    tmp = so.with_name(f".{so.name}.{os.getpid()}.tmp")
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(src), "-ldl"], capture_output=True,
                       text=True, timeout=120, check=False)
    if r.returncode != 0:
        raise WorkbenchError(f"could not compile the loopback shim: {r.stderr.strip()[:300]}")
    os.replace(tmp, so)
    return so


class OrthancSandbox(OrthancClient):
    """An Orthanc on 127.0.0.1 with its own storage folder; ``modalities``: name -> (AE title, port) on loopback."""

    def __init__(self, folder: str | Path, modalities: dict[str, tuple[str, int]] | None = None,
                 aet: str = "ORTHANC") -> None:
        super().__init__("")
        self.folder = Path(folder)
        self.aet = aet
        self.http_port, self.dicom_port = free_port(), free_port()
        self.modalities = dict(modalities or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> OrthancSandbox:
        why = available()
        if why:
            raise WorkbenchError(f"cannot start the PACS sandbox: {why}")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "workbench-sandbox", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"), "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": self.aet, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomModalities": {n: [a, "127.0.0.1", p] for n, (a, p) in self.modalities.items()},
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "Plugins": [], "SaveJobs": False,
            "ConcurrentJobs": 2, "DicomScuTimeout": 30, "DicomAssociationCloseDelay": 0, "StableAge": 3600,
            "OverwriteInstances": False, "HttpTimeout": 60, "StorageCompression": False,
        }
        cfg = self.folder / "orthanc.json"
        write_text(cfg, json.dumps(config, indent=1))
        env = {**os.environ, "LD_PRELOAD": str(loopback_shim())}
        log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen([shutil.which(ORTHANC) or "/usr/sbin/Orthanc", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkbenchError(f"Orthanc exited at start (code {self.proc.returncode}); see "
                                     f"{self.folder / 'orthanc.log'}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise WorkbenchError(f"Orthanc did not answer on {self.url} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Stop Orthanc by its PID (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> OrthancSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def listening_addresses(self) -> list[str]:
        """The addresses Orthanc's listening sockets are bound to (should be loopback only)."""
        import psutil

        assert self.proc is not None
        return sorted({c.laddr.ip for c in psutil.Process(self.proc.pid).net_connections(kind="inet")
                       if c.status == psutil.CONN_LISTEN})


__all__ = ["OrthancClient", "OrthancSandbox", "available", "free_port", "loopback_shim"]
