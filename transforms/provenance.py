"""Provenance: content digests of inputs and outputs, versions, and the
manifest.json that ties an artifact to exactly what produced it."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from importlib import metadata
from typing import Dict, Iterable, Mapping, Optional

from apache_beam.io.filesystems import FileSystems

from featurebridge.transforms.layout import MANIFEST

__all__ = [
    "directory_digests",
    "seal_manifest",
    "file_digest",
    "package_versions",
    "utc_now",
    "write_json_atomic",
]

_PACKAGES = (
    "featurebridge",
    "apache-beam",
    "tensorflow",
    "tensorflow-transform",
    "tfx-bsl",
    "pyarrow",
    "numpy",
    "protobuf",
    "grpcio",
)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def file_digest(path: str, chunk_size: int = 1 << 20) -> Dict[str, object]:
    """sha256 and size of a file (any Beam filesystem)."""
    h = hashlib.sha256()
    size = 0
    with FileSystems.open(path, compression_type="uncompressed") as f:
        while True:
            block = f.read(chunk_size)
            if not block:
                break
            size += len(block)
            h.update(block)
    return {"path": path, "bytes": size, "sha256": h.hexdigest()}


def directory_digests(root: str, exclude: Iterable[str] = ()) -> Dict[str, Dict[str, object]]:
    """{relative path: {bytes, sha256}} for every file under `root`."""
    excluded = set(exclude)
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in excluded:
                continue
            d = file_digest(full)
            out[rel] = {"bytes": d["bytes"], "sha256": d["sha256"]}
    return dict(sorted(out.items()))


def package_versions(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions.update(extra or {})
    return versions


def write_json_atomic(path: str, payload: Mapping) -> None:
    """Writes JSON with sorted keys via a temp file and rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def seal_manifest(directory: str, manifest: Dict[str, object]) -> Dict[str, object]:
    """Completes `manifest` (finish time, versions, digests of every file in
    `directory`) and writes it as directory/manifest.json. Call it last,
    just before the staged directory is committed."""
    manifest.update(
        finished=utc_now(),
        versions=package_versions(),
        outputs=directory_digests(directory, exclude=(MANIFEST,)),
    )
    write_json_atomic(os.path.join(directory, MANIFEST), manifest)
    return manifest
