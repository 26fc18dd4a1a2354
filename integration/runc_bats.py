"""runc's own seccomp integration tests (bats), run against plain runc or ocishim-runtime.

No file of runc's is committed here. At test time the Debian source package of the
runc that is installed (exactly its version, Debian's patches applied) is downloaded
with `apt-get source` through a private deb-src list (the host's apt configuration is
not touched) and unpacked under .cache/runc-bats/. runc's test helpers that its
seccomp tests start (recvtty, seccompagent) are built from that source with Debian's
Go packages, as Debian's own autopkgtest does with `make recvtty seccompagent`.

What is ours, because runc's CI downloads it from the network:
- the busybox image: a tarball of busybox-static with every applet, in place of the
  docker-library busybox tarball that runc's get-images.sh fetches from GitHub;
- get-images.sh itself, which only names that tarball;
- the RUNC program: plain runc, or a script that runs ocishim-runtime in front of it.

The bats files run as runc's CI runs them: as root, `bats --tap` under `script`, so
that `runc run` gets the terminal that `runc spec` asks for.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from . import rootfs
from .bundles import BUSYBOX, busybox_rootfs

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "runc-bats"
MIRRORS = ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security")
MARKER = ".ocishim-runc-bats.json"  # written last: its presence means the tree is complete
BATS_FILES = "seccomp*.bats"  # the acceptance of issue 7: tests/integration/seccomp*.bats
RUN_TIMEOUT = 600

# runc's seccomp tests start two helpers of runc's own; both import these packages
# (Debian ships them under /usr/share/gocode, which is what DEBS must install).
GO_IMPORTS = (
    "github.com/containerd/console",
    "github.com/urfave/cli",
    "github.com/cyphar/filepath-securejoin",
    "github.com/opencontainers/runtime-spec/specs-go",
    "github.com/seccomp/libseccomp-golang",
    "github.com/sirupsen/logrus",
    "golang.org/x/sys/unix",
)
HELPERS = ("recvtty", "seccompagent")
TOOLS = ("bats", "go", "dpkg-source", "apt-get", "script", "jq", "xz", "gcc", "pkg-config")


class SourceUnavailable(RuntimeError):
    """runc's source cannot be had here (no root, a tool missing, no mirror): skip, with this reason."""


@dataclass(frozen=True)
class RuncTree:
    """An unpacked runc source tree of the installed version, ready for its bats tests."""

    version: str
    root: Path

    @property
    def integration(self) -> Path:
        return self.root / "tests" / "integration"

    def bats_files(self) -> list[Path]:
        return sorted(self.integration.glob(BATS_FILES))


@dataclass(frozen=True)
class BatsResult:
    """One bats run: each test's TAP status ("ok", "not ok", "skip"), what bats printed
    under it (for a failed test: the failed line and the output of the runc calls), and
    the raw output."""

    statuses: dict[str, str]
    diagnostics: dict[str, str]
    output: str


def installed_runc() -> str:
    """The Debian version of the installed runc package, e.g. 1.1.5+ds1-1+deb12u1."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "runc"],
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout:
        raise SourceUnavailable("the runc Debian package is not installed (make test installs it)")
    return out.stdout.strip()


def missing_prerequisites() -> str | None:
    """Why runc's bats tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "runc's integration tests run as root, as in runc's CI"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not found (make test installs it)"
    for imp in GO_IMPORTS:
        if not (Path("/usr/share/gocode/src") / imp).is_dir():
            return f"Go package {imp} not in /usr/share/gocode (make test installs it)"
    if not BUSYBOX.exists():
        return "busybox-static is not installed (make test installs it)"
    return None


def _codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\S+)$", text, re.M)
    if not match:
        raise SourceUnavailable("/etc/os-release names no Debian codename")
    return match.group(1).strip('"')


def mirror_unreachable(timeout: float = 20) -> str | None:
    """Why Debian's mirror cannot serve source packages here, or None."""
    return rootfs.mirror_unreachable(_codename(), MIRRORS[0], timeout)


def _run(cmd: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None,
         timeout: float = 600) -> None:
    """Run a preparation step; its output goes into the error when it fails."""
    proc = subprocess.run(list(cmd), cwd=cwd, env=dict(env) if env else None,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def download_source(version: str, dest: Path) -> Path:
    """`apt-get source runc=VERSION` into dest through a private deb-src list; the .dsc path.

    Every apt directory is redirected into a temp dir: the host's sources, lists and
    cache stay as they are. apt checks the files against the signed Sources index.
    """
    codename = _codename()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apt-", dir=dest) as tmp:
        apt = Path(tmp)
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d"):
            (apt / sub).mkdir(parents=True)
        (apt / "sources.list").write_text(
            f"deb-src {MIRRORS[0]} {codename} main\n"
            f"deb-src {MIRRORS[0]} {codename}-updates main\n"
            f"deb-src {MIRRORS[1]} {codename}-security main\n")
        opts = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
                "-o", f"Dir::Etc::SourceParts={apt / 'sources.list.d'}",
                "-o", f"Dir::State::Lists={apt / 'lists'}",
                "-o", f"Dir::Cache={apt / 'cache'}",
                # the temp dir is root's; apt's _apt sandbox user could not write it
                "-o", "APT::Sandbox::User=root",
                "-qq"]
        _run(["apt-get", *opts, "update"], timeout=300)
        _run(["apt-get", *opts, "source", "--download-only", f"runc={version}"],
             cwd=dest, timeout=300)
    upstream = version.split(":")[-1]
    dsc = dest / f"runc_{upstream}.dsc"
    if not dsc.exists():
        raise RuntimeError(f"apt-get source left no {dsc.name} in {dest}")
    return dsc


def build_helpers(root: Path, work: Path) -> None:
    """Build recvtty and seccompagent where runc's helpers.bash looks for them.

    The Debian source has no vendor/ directory (+ds), so the build uses GOPATH mode over
    Debian's Go packages, as dh-golang does; tags as in runc's Makefile (seccomp).
    """
    gopath = work / "gopath"
    link = gopath / "src" / "github.com" / "opencontainers" / "runc"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(root)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:/usr/share/gocode",
               GOCACHE=str(work / "gocache"), GOFLAGS="", CGO_ENABLED="1")
    for name in HELPERS:
        _run(["go", "build", "-trimpath", "-buildmode=pie", "-tags", "seccomp",
              "-o", f"contrib/cmd/{name}/{name}", f"./contrib/cmd/{name}"], cwd=link, env=env)
    shutil.rmtree(work / "gocache", ignore_errors=True)  # 50 MB, never needed again


def busybox_image(dest: Path) -> Path:
    """A busybox tarball for setup_bundle: busybox-static with every applet it has."""
    with tempfile.TemporaryDirectory(prefix="busybox-", dir=dest.parent) as tmp:
        root = busybox_rootfs(Path(tmp) / "rootfs")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            link = root / "bin" / applet
            if not link.exists() and not link.is_symlink():
                link.symlink_to("busybox")
        # setup_bundle extracts with --exclude './dev/*': members are named ./...
        _run(["tar", "-C", str(root), "-cJf", str(dest), "."])
    return dest


GET_IMAGES = """#!/bin/bash
# Written by ocishim's integration/runc_bats.py in place of runc's get-images.sh, which
# downloads its busybox tarball from GitHub (no network here). Only the name is ours:
# helpers.bash evals this output exactly as it evals the original's.
echo "BUSYBOX_IMAGE={image}"
"""


def ensure_tree(version: str | None = None) -> RuncTree:
    """The source tree of the installed runc under .cache/runc-bats, prepared once."""
    version = version or installed_runc()
    base = CACHE / version
    root = base / "runc"
    with rootfs.locked(CACHE / ".lock"):
        if (base / MARKER).exists():
            return RuncTree(version, root)
        why = mirror_unreachable()
        if why:
            raise SourceUnavailable(why)
        if root.exists():
            shutil.rmtree(root)
        dsc = download_source(version, base / "src")
        _run(["dpkg-source", "--no-check", "--no-copy", "-x", str(dsc), str(root)], timeout=300)
        build_helpers(root, base)
        image = busybox_image(base / "busybox.tar.xz")
        get_images = root / "tests" / "integration" / "get-images.sh"
        get_images.rename(get_images.with_suffix(".sh.runc"))
        get_images.write_text(GET_IMAGES.format(image=image))
        get_images.chmod(0o755)
        (base / MARKER).write_text(json.dumps({"version": version, "dsc": dsc.name}) + "\n")
    return RuncTree(version, root)


TAP_LINE = re.compile(r"^(ok|not ok) (\d+) (.*?)(?: # (skip)\b.*)?$")


def parse_tap(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """From bats' TAP: test name -> "ok", "not ok" or "skip", and test name -> the "# "
    lines bats printed under it. Checks that every planned test reported."""
    statuses: dict[str, str] = {}
    diagnostics: dict[str, list[str]] = {}
    planned = None
    current: str | None = None
    for raw in output.splitlines():
        line = raw.rstrip("\r")
        plan = re.match(r"^1\.\.(\d+)$", line)
        if plan:
            planned = int(plan.group(1))
            continue
        m = TAP_LINE.match(line)
        if m:
            current = m.group(3)
            if current in statuses:
                raise AssertionError(f"two bats tests named {current!r}: results would be mixed up")
            statuses[current] = "skip" if m.group(4) else m.group(1)
            diagnostics[current] = []
        elif current is not None and line.startswith("#"):
            diagnostics[current].append(line[2:] if line.startswith("# ") else line[1:])
    if planned is None or planned != len(statuses):
        raise AssertionError(f"bats planned {planned} tests and reported {len(statuses)}:\n{output}")
    return statuses, {name: "\n".join(lines) for name, lines in diagnostics.items()}


def ocishim_runc(dest: Path, settings: Mapping[str, str] | None, log: Path) -> Path:
    """A RUNC program for helpers.bash: ocishim-runtime in front of the installed runc.

    settings: the ocishim settings file's content besides "log" (None: the defaults).
    """
    runtime = Path(sys.executable).parent / "ocishim-runtime"
    if not runtime.exists():
        raise FileNotFoundError(f"{runtime} missing: make test installs ocishim into the venv")
    real = shutil.which("runc")
    if real is None:
        raise FileNotFoundError("runc not found")
    config = dest / "ocishim.json"
    config.write_text(json.dumps({**(settings or {}), "log": str(log)}) + "\n")
    script = dest / "runc"  # helpers.bash prints basename "$RUNC" in its debug lines
    script.write_text(
        "#!/bin/sh\n"
        "# RUNC for runc's bats tests: ocishim-runtime, then the installed runc\n"
        f"OCISHIM_RUNTIME={shlex.quote(real)} OCISHIM_CONFIG={shlex.quote(str(config))} \\\n"
        f"  exec {shlex.quote(str(runtime))} \"$@\"\n")
    script.chmod(0o755)
    return script


def _kill_leftovers(tmp: Path) -> None:
    """Containers and a seccomp agent that an interrupted bats run left behind."""
    for state in tmp.glob("**/runc.*/state"):
        listed = subprocess.run(["runc", "--root", str(state), "list", "-q"],
                                capture_output=True, text=True)
        for cid in listed.stdout.split():
            subprocess.run(["runc", "--root", str(state), "delete", "-f", cid],
                           capture_output=True)
    pidfile = tmp / "seccompagent.pid"  # started by our bats run: $BATS_TMPDIR is tmp
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def run_bats(tree: RuncTree, runc: str | Path, timeout: float = RUN_TIMEOUT) -> BatsResult:
    """Run the tree's seccomp*.bats with RUNC=runc as runc's CI does; per-test statuses."""
    files = tree.bats_files()
    if not files:
        raise AssertionError(f"no {BATS_FILES} in {tree.integration}")
    with tempfile.TemporaryDirectory(prefix="ocishim-bats-") as tmp:
        # bats puts BATS_TMPDIR (the seccomp agent's socket and pid file) in $TMPDIR:
        # a private one keeps two runs, or a stale agent, from meeting.
        env = dict(os.environ, RUNC=str(runc), TMPDIR=tmp)
        env.pop("RUNC_USE_SYSTEMD", None)
        cmd = shlex.join(["bats", "--tap", *[str(f) for f in files]])
        proc = subprocess.Popen(["script", "-q", "-e", "-c", cmd, "/dev/null"],
                                cwd=tree.integration, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            raise AssertionError(f"bats did not finish in {timeout}s:\n{output}")
        finally:
            _kill_leftovers(Path(tmp))
    statuses, diagnostics = parse_tap(output)
    return BatsResult(statuses, diagnostics, output)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the three runs side by side as a Markdown table (docs/runc-bats.md), then what
    bats printed for each test whose result differs from plain runc's. -v: ocishim's logs."""
    args = list(sys.argv[1:] if argv is None else argv)
    tree = ensure_tree()
    print(f"runc {tree.version} ({tree.root}), bats files: "
          + ", ".join(f.name for f in tree.bats_files()))
    runs: dict[str, BatsResult] = {}
    with tempfile.TemporaryDirectory(prefix="ocishim-runc-") as tmp:
        runs["runc"] = run_bats(tree, shutil.which("runc") or "runc")
        for label, settings in (("ocishim max", {"enosys": "max"}),
                                ("ocishim default (unnamed)", None)):
            d = Path(tmp) / label.split()[1]
            d.mkdir()
            runs[label] = run_bats(tree, ocishim_runc(d, settings, d / "ocishim.log"))
            if "-v" in args and (d / "ocishim.log").exists():
                print((d / "ocishim.log").read_text())
    plain = runs["runc"]
    print("| test | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for name in plain.statuses:
        print(f"| {name} | " + " | ".join(r.statuses.get(name, "-") for r in runs.values()) + " |")
    print("| **total ok / not ok / skip** | " + " | ".join(
        " / ".join(str(list(r.statuses.values()).count(s)) for s in ("ok", "not ok", "skip"))
        for r in runs.values()) + " |")
    for label, r in runs.items():
        for name, status in r.statuses.items():
            if status != plain.statuses.get(name):
                print(f"\n{label}: {status} {name}\n{r.diagnostics[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
