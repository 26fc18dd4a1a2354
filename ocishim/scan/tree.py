"""The file tree of an image: a root file system directory, an OCI image layout, or a
`docker save` / `podman save` archive (docker-archive or oci-archive).

Images are untrusted input. Layers are read as tar streams and applied in order into a
table of paths, never onto the disk under their own names: whiteouts (`.wh.NAME`
removes NAME, `.wh..wh..opq` empties a directory of what lower layers put there) and
hard links are resolved in that table, symlinks are kept as targets to resolve inside
the image, and only the ELF files the scan reads are copied out, each to a temporary
file named by a counter. Nothing an archive says can make ocishim write elsewhere.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from typing import IO, Iterator

from ..errors import UsageError

ELF_MAGIC = b"\x7fELF"
MAX_ENTRIES = 2_000_000
MAX_COPIED = 8 << 30  # bytes of ELF files copied out of layers
MAX_JSON = 16 << 20
MAX_LINKS = 40  # symlinks followed while resolving one path, as the kernel does
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})\Z")


@dataclass
class Entry:
    kind: str  # "file", "elf", "link", "dir"
    value: str | None = None  # elf: where its bytes are on this machine; link: the target
    layer: int = 0


@dataclass
class Tree:
    """Paths of the image (absolute, normalized) to what is there."""

    entries: dict[str, Entry] = field(default_factory=dict)
    source: str = ""
    kind: str = "directory"  # directory, oci-layout, docker-archive, oci-archive
    _tmp: tempfile.TemporaryDirectory | None = None
    _copied: int = 0
    _stored: int = 0

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def elf_files(self) -> Iterator[tuple[str, str]]:
        """(path in the image, path to read on this machine) of every ELF file, by path."""
        for path in sorted(self.entries):
            entry = self.entries[path]
            if entry.kind == "elf" and entry.value is not None:
                yield path, entry.value

    def resolve(self, path: str) -> str | None:
        """path with every symlink followed inside the image, or None if it leads nowhere."""
        parts = [p for p in path.split("/") if p]
        done = "/"
        hops = 0
        while parts:
            part = parts.pop(0)
            candidate = posixpath.normpath(posixpath.join(done, part)) if part != ".." else \
                posixpath.dirname(done.rstrip("/")) or "/"
            entry = self.entries.get(candidate)
            if entry is not None and entry.kind == "link":
                hops += 1
                if hops > MAX_LINKS:
                    return None
                target = entry.value or ""
                base = "/" if target.startswith("/") else done
                parts = [p for p in posixpath.join(base, target).split("/") if p] + parts
                done = "/"
                continue
            done = candidate
        return done if done in self.entries else None

    # --- building ------------------------------------------------------------------

    def _store(self, data: IO[bytes], size: int) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ocishim-scan-")
        self._copied += size
        if self._copied > MAX_COPIED:
            raise UsageError(self.source, f"more than {MAX_COPIED >> 30} GiB of ELF files: refused")
        self._stored += 1
        path = os.path.join(self._tmp.name, str(self._stored))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(data, out)
        return path

    def _remove(self, path: str, below_layer: int | None = None, keep_self: bool = False) -> None:
        prefix = path.rstrip("/") + "/"
        for p in [p for p in self.entries if p.startswith(prefix) or (p == path and not keep_self)]:
            if below_layer is None or self.entries[p].layer < below_layer:
                del self.entries[p]

    def apply_layer(self, stream: IO[bytes], layer: int, where: str) -> None:
        """Apply one layer (a tar stream, compressed or not) on top of the tree."""
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    self._apply_member(tar, member, layer)
        except tarfile.CompressionError as exc:
            raise UsageError(where, f"cannot read this layer's compression: {exc}") from None
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise UsageError(where, f"not a readable tar layer: {exc}") from None

    def _apply_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, layer: int) -> None:
        if len(self.entries) > MAX_ENTRIES:
            raise UsageError(self.source, f"more than {MAX_ENTRIES} files: refused")
        path = normalize(member.name)
        if path is None:
            return  # outside the image's root ("../x"): nothing a runtime would see either
        directory, base = posixpath.split(path)
        if base == ".wh..wh..opq":
            self._remove(directory, below_layer=layer, keep_self=True)
            return
        if base.startswith(".wh."):
            self._remove(posixpath.join(directory, base[len(".wh."):]))
            return
        if not member.isdir() and path in self.entries:
            # A file replaces what was there; only a directory has children to drop.
            if self.entries[path].kind == "dir":
                self._remove(path)
            else:
                del self.entries[path]
        if member.isdir():
            self.entries[path] = Entry("dir", None, layer)
        elif member.issym():
            self.entries[path] = Entry("link", member.linkname, layer)
        elif member.islnk():
            target = normalize(member.linkname)
            found = self.entries.get(target) if target else None
            if found is not None:
                self.entries[path] = Entry(found.kind, found.value, layer)
        elif member.isreg():
            data = tar.extractfile(member)
            head = data.read(4) if data is not None else b""
            if head == ELF_MAGIC and data is not None:
                self.entries[path] = Entry("elf", self._store(_Prefixed(head, data), member.size), layer)
            else:
                self.entries[path] = Entry("file", None, layer)


class _Prefixed:
    """A file object that gives back the bytes already read from it first."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out + (self.rest.read(n - len(out)) if n < 0 or n > len(out) else b"")
        return self.rest.read(n)


def normalize(name: str) -> str | None:
    """A tar member name as an absolute path in the image, or None if it climbs out."""
    parts: list[str] = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/" + "/".join(parts) if parts else "/"


# --- the three kinds of source ------------------------------------------------------

def source_mode(path: str) -> int:
    """The st_mode of a source scan can read (a directory or a file), without reading it;
    a UsageError naming ROOTFS when it is missing or neither."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError("ROOTFS", f"{path}: {exc.strerror}") from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise UsageError("ROOTFS", f"{path}: not a directory, an OCI layout or an image archive")
    return st.st_mode


def open_source(path: str) -> Tree:
    """The tree of a root file system directory, an OCI layout, or an image archive."""
    if stat.S_ISREG(source_mode(path)):
        return _from_archive(path)
    if os.path.isfile(os.path.join(path, "oci-layout")) and os.path.isfile(os.path.join(path, "index.json")):
        return _from_layout(path)
    return _from_directory(path)


def _from_directory(root: str) -> Tree:
    tree = Tree(source=root, kind="directory")
    root = os.path.abspath(root)
    for here, dirs, files in os.walk(root, followlinks=False):
        rel = "/" + os.path.relpath(here, root) if here != root else "/"
        rel = posixpath.normpath(rel)
        tree.entries[rel] = Entry("dir")
        for name in dirs + files:
            full = os.path.join(here, name)
            image_path = posixpath.join(rel, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                tree.entries[image_path] = Entry("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                tree.entries[image_path] = Entry("dir")
            elif stat.S_ISREG(st.st_mode):
                tree.entries[image_path] = Entry("elf" if _is_elf(full) else "file", full)
        if len(tree.entries) > MAX_ENTRIES:
            raise UsageError(root, f"more than {MAX_ENTRIES} files: refused")
    return tree


def _is_elf(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.read(fd, 4) == ELF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def _load_json(data: bytes, where: str) -> object:
    if len(data) > MAX_JSON:
        raise UsageError(where, "larger than 16 MiB: refused")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(where, f"not JSON: {exc}") from None


def _digest_hex(descriptor: object, where: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    m = _DIGEST.match(digest) if isinstance(digest, str) else None
    if m is None:
        raise UsageError(where, f"digest must be sha256:<64 hex digits>, got {digest!r}")
    return m.group(1)


def _layers_of_layout(read_blob, where: str) -> list[str]:
    """The layer digests of the first image of an OCI layout (through nested indexes)."""
    index = _load_json(read_blob(None), f"{where}/index.json")
    for depth in range(4):
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list) or not manifests:
            raise UsageError(f"{where}/index.json", "manifests: no image in this layout")
        chosen = _host_platform(manifests)
        blob = _load_json(read_blob(_digest_hex(chosen, f"{where}: manifests")), f"{where}: manifest")
        if isinstance(blob, dict) and isinstance(blob.get("layers"), list):
            return [_digest_hex(layer, f"{where}: layers[{i}]") for i, layer in enumerate(blob["layers"])]
        index = blob
    raise UsageError(where, "image indexes nested too deep")


def _host_platform(manifests: list) -> dict:
    """The manifest for this machine's platform when the index says, else the first."""
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    for m in manifests:
        plat = m.get("platform") if isinstance(m, dict) else None
        if isinstance(plat, dict) and plat.get("architecture") == machine:
            return m
    return manifests[0] if isinstance(manifests[0], dict) else {}


def _from_layout(root: str) -> Tree:
    tree = Tree(source=root, kind="oci-layout")

    def blob_path(hexdigest: str | None) -> str:
        return os.path.join(root, "index.json") if hexdigest is None else \
            os.path.join(root, "blobs", "sha256", hexdigest)

    def read_blob(hexdigest: str | None) -> bytes:
        try:
            with open(blob_path(hexdigest), "rb") as f:
                return f.read(MAX_JSON + 1)
        except OSError as exc:
            raise UsageError(root, f"cannot read blob {hexdigest}: {exc.strerror}") from None

    for i, digest in enumerate(_layers_of_layout(read_blob, root)):
        with open(blob_path(digest), "rb") as f:
            tree.apply_layer(f, i, f"{root}: layer {digest[:12]}")
    return tree


def _from_archive(path: str) -> Tree:
    """docker-archive (manifest.json with Layers) or oci-archive (an OCI layout in a tar)."""
    try:
        outer = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise UsageError("ROOTFS", f"{path}: not a directory, an OCI layout or an image archive ({exc})") from None
    with outer:
        members = {normalize(m.name): m for m in outer.getmembers() if m.isreg()}

        def read(name: str) -> IO[bytes]:
            member = members.get(normalize(name))
            data = outer.extractfile(member) if member is not None else None
            if data is None:
                raise UsageError(path, f"{name}: not in the archive")
            return data

        if "/manifest.json" in members and "/oci-layout" not in members:
            tree = Tree(source=path, kind="docker-archive")
            manifest = _load_json(read("manifest.json").read(MAX_JSON + 1), f"{path}: manifest.json")
            first = manifest[0] if isinstance(manifest, list) and manifest else None
            layers = first.get("Layers") if isinstance(first, dict) else None
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise UsageError(f"{path}: manifest.json", "[0].Layers: a list of layer paths is needed")
            for i, name in enumerate(layers):
                tree.apply_layer(read(name), i, f"{path}: {name}")
            return tree
        if "/oci-layout" in members and "/index.json" in members:
            tree = Tree(source=path, kind="oci-archive")

            def read_blob(hexdigest: str | None) -> bytes:
                name = "index.json" if hexdigest is None else f"blobs/sha256/{hexdigest}"
                return read(name).read(MAX_JSON + 1)

            for i, digest in enumerate(_layers_of_layout(read_blob, path)):
                tree.apply_layer(read(f"blobs/sha256/{digest}"), i, f"{path}: layer {digest[:12]}")
            return tree
    raise UsageError("ROOTFS", f"{path}: an archive without manifest.json or an OCI layout")
