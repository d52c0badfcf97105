"""JupyterLab on 127.0.0.1 for the browser tests: started with its own config and runtime folders (no news pop-up),
waited for within a bounded time, and stopped by its process group's id."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from federated.poc import free_port


@contextmanager
def jupyterlab(root: Path, env: dict[str, str], state: Path, start_timeout_s: float = 90.0) -> Iterator[tuple[str, str]]:
    """JupyterLab serving ``root`` with ``env`` added to this process's environment; yields its base URL with the
    token: ``(base, token)``, a notebook's page being ``{base}/lab/tree/{name}?token={token}``."""
    port, token = free_port(), secrets.token_hex(16)
    labconfig = state / "jcfg" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    full = {**os.environ, **env, "JUPYTER_CONFIG_DIR": str(state / "jcfg"), "JUPYTER_RUNTIME_DIR": str(state / "jrt")}
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                            "--ServerApp.open_browser=False", "--allow-root", "--LabApp.news_url=",
                            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                           env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + start_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.time() > deadline or lab.poll() is not None:
                    raise AssertionError(f"JupyterLab did not start on 127.0.0.1 within {start_timeout_s:.0f} s") from None
                time.sleep(1)
        yield f"http://127.0.0.1:{port}", token
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, 15)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, 9)
            lab.wait(timeout=30)
