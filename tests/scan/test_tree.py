"""Layers applied in order, with whiteouts and hard links, from an OCI layout and a
docker-archive that the test writes itself by the specs (OCI image-spec layer and layout
rules; docker save's manifest.json), with hostile member names thrown in."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from ocishim.errors import UsageError
from ocishim.scan.tree import open_source

ELF = Path("/bin/true").read_bytes()  # any ELF file will do


def _tar(entries) -> bytes:
    """A tar of (name, kind, data): kind file, dir, sym (data: target), link (data: target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}[kind]
            if kind in ("sym", "link"):
                info.linkname = data
            tar.addfile(info)
    return buf.getvalue()


LAYER1 = [("bin", "dir", None), ("bin/a", "file", ELF), ("bin/b", "file", ELF + b"b"),
          ("etc", "dir", None), ("etc/x", "file", b"text"), ("opt/d/f", "file", ELF + b"f"),
          ("opt/d/sub/deep", "file", ELF + b"deep"), ("lib64", "sym", "bin"),
          ("bin/hard", "link", "bin/b"),
          ("../../escape-h10", "file", ELF), ("/abs/elf", "file", ELF + b"abs")]
LAYER2 = [("bin/.wh.a", "file", b""), ("opt/d/.wh..wh..opq", "file", b""), ("opt/d/g", "file", ELF + b"g"),
          ("etc/x", "file", ELF + b"x")]
EXPECTED = {"/bin/b": ELF + b"b", "/bin/hard": ELF + b"b", "/opt/d/g": ELF + b"g",
            "/etc/x": ELF + b"x", "/abs/elf": ELF + b"abs"}


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layout(path: Path, layers: list[bytes]) -> Path:
    path.mkdir()
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = _blob(path, b"{}")
    manifest = {"schemaVersion": 2, "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
                "layers": [{**_blob(path, gzip.compress(layer)),
                            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"} for layer in layers]}
    ref = _blob(path, json.dumps(manifest).encode())
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**ref, "mediaType": "application/vnd.oci.image.manifest.v1+json"}]}))
    return path


def _docker_archive(path: Path, layers: list[bytes]) -> Path:
    entries = [(f"l{i}/layer.tar", "file", layer) for i, layer in enumerate(layers)]
    entries.append(("manifest.json", "file", json.dumps(
        [{"Config": "c.json", "RepoTags": ["x:y"], "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]).encode()))
    path.write_bytes(_tar(entries))
    return path


def _contents(tree) -> dict[str, bytes]:
    return {p: Path(local).read_bytes() for p, local in tree.elf_files()}


@pytest.mark.parametrize("kind", ["oci-layout", "docker-archive"])
def test_layers_whiteouts_links(tmp_path, kind):
    layers = [_tar(LAYER1), _tar(LAYER2)]
    source = _layout(tmp_path / "layout", layers) if kind == "oci-layout" else \
        _docker_archive(tmp_path / "image.tar", layers)
    before = set(os.listdir("/tmp"))
    with open_source(str(source)) as tree:
        assert tree.kind == kind
        assert _contents(tree) == EXPECTED
        assert tree.entries["/lib64"].kind == "link"
        assert tree.resolve("/lib64/b") == "/bin/b"
        assert "/opt/d/sub/deep" not in tree.entries  # the opaque directory hid the lower layer
        kept = [local for _, local in tree.elf_files()]
    assert not any(os.path.exists(p) for p in kept)  # the copies are gone after close
    assert not (tmp_path.parent.parent / "escape-h10").exists()
    assert not Path("/escape-h10").exists() and not Path("/abs/elf").exists()
    assert {n for n in set(os.listdir("/tmp")) - before if n.startswith("ocishim-scan-")} == set()


def test_directory_keeps_symlinks_as_links(tmp_path):
    (tmp_path / "bin").mkdir()
    shutil.copy("/bin/true", tmp_path / "bin" / "t")
    (tmp_path / "bin" / "link").symlink_to("/bin/t")
    (tmp_path / "outside").symlink_to("/etc")
    with open_source(str(tmp_path)) as tree:
        assert [p for p, _ in tree.elf_files()] == ["/bin/t"]
        assert tree.resolve("/bin/link") == "/bin/t"
        assert tree.resolve("/outside/passwd") is None  # the image's /etc, which has nothing


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a tar at all" * 100), "not a directory, an OCI layout or an image archive"),
    (lambda p: p.write_bytes(_tar([("manifest.json", "file", b"[{\"Layers\": 5}]")])), "Layers"),
    (lambda p: p.write_bytes(_tar([("manifest.json", "file", b"{no")])), "not JSON"),
])
def test_bad_archives(tmp_path, make, message):
    path = tmp_path / "bad.tar"
    make(path)
    with pytest.raises(UsageError, match=message):
        open_source(str(path))


def test_layout_digest_must_be_sha256_hex(tmp_path):
    layout = _layout(tmp_path / "layout", [_tar(LAYER1)])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(UsageError, match="digest must be sha256"):
        open_source(str(layout))
