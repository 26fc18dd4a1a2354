"""`ocishim run BUNDLE`: run a bundle under the patched filter without touching it.

The user's bundle is never written: the patched config.json goes into a private
temporary bundle whose root.path is the original rootfs, made absolute. stdio is
the container's; SIGINT/SIGTERM/SIGHUP/SIGQUIT are passed on to the runtime, which
passes them to the container; the container is deleted afterwards, and the exit code
is the container's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from typing import Sequence

from ..errors import ProfileError, SystemFailure, UsageError
from ..patch import Mode, Version
from ..profile import load
from .config import dumps, rewrite

KNOWN_RUNTIMES = ("crun", "runc")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def find_runtime(name: str) -> str:
    """A runtime by name (crun, runc) or path; a clear error when it is not there."""
    if os.sep in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise UsageError("--runtime", f"{name} is not an executable file")
        return name
    path = shutil.which(name)
    if path is None:
        known = ", ".join(KNOWN_RUNTIMES)
        raise UsageError("--runtime", f"runtime {name!r} not found in PATH (known: {known}, or a path)")
    return path


def prepare_bundle(bundle: str, mode: Mode, emulate: Version | None, unknown_fail: bool) -> str:
    """Write the patched config into a new private bundle dir; returns its path."""
    loaded = load(bundle)
    if loaded.config is None:
        raise UsageError(bundle, "ocishim run takes a bundle directory or its config.json")
    bundle_dir = os.path.dirname(os.path.abspath(loaded.source))
    result = rewrite(loaded.config, mode, emulate, loaded.source, unknown_fail)
    config = result.config if result.config is not None else loaded.config
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise ProfileError("root.path", "a bundle needs root.path (a string)")
    root["path"] = os.path.normpath(os.path.join(bundle_dir, root["path"]))
    tmp = tempfile.mkdtemp(prefix="ocishim-bundle-")
    try:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            f.write(dumps(config))
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemFailure(tmp, f"cannot write the temporary bundle: {exc.strerror}") from None
    return tmp


def run(bundle: str, runtime: str = "crun", container_id: str | None = None,
        mode: Mode = Mode("unnamed"), emulate: Version | None = None,
        runtime_args: Sequence[str] = (), unknown_fail: bool = False) -> int:
    """Run the bundle with the runtime; returns the container's exit code."""
    binary = find_runtime(runtime)
    cid = container_id or f"ocishim-{uuid.uuid4().hex[:12]}"
    base = [binary, *runtime_args]
    # The delete below would remove a container of that name that is not ours.
    if container_id is not None and _exists(base, cid):
        raise UsageError("--id", f"a container {cid!r} already exists ({binary} state {cid})")
    proc: subprocess.Popen | None = None
    pending: list[int] = []
    previous = {}

    def forward(signum, _frame):
        if proc is None:
            pending.append(signum)  # before the runtime starts: do not start it
        elif proc.poll() is None:
            proc.send_signal(signum)

    # Handlers first, so that a signal cannot end this process between creating the
    # temporary bundle and removing it.
    for sig in FORWARDED:
        previous[sig] = signal.signal(sig, forward)
    tmp: str | None = None
    try:
        tmp = prepare_bundle(bundle, mode, emulate, unknown_fail)
        if pending:
            return 128 + pending[0]
        proc = subprocess.Popen(base + ["run", "--bundle", tmp, cid])
        if pending:  # arrived while Popen ran, when proc was still None
            proc.send_signal(pending[0])
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:
                continue
        return code if code >= 0 else 128 - code
    except OSError as exc:
        raise SystemFailure(binary, f"cannot start the runtime: {exc.strerror}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc is not None:
            subprocess.run(base + ["delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _exists(base: Sequence[str], cid: str) -> bool:
    """Whether the runtime (with its global flags) has a container of this id."""
    try:
        return subprocess.run([*base, "state", cid], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError as exc:
        raise SystemFailure(base[0], f"cannot start the runtime: {exc.strerror}") from None
