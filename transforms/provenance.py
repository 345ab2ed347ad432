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

from featurebridge.transforms.layout import MANIFEST

__all__ = [
    "directory_digests",
    "seal_manifest",
    "file_digest",
    "manifest_link",
    "model_link",
    "module_digest",
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


def _open_bytes(path: str):
    """A local file with open(); any other Beam filesystem (gs://, s3://...)
    through Beam, imported only then (reading local digests stays light)."""
    if "://" not in path:
        return open(path, "rb")
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type="uncompressed")


def file_digest(path: str, chunk_size: int = 1 << 20) -> Dict[str, object]:
    """sha256 and size of a file (any Beam filesystem).

    Raises:
      OSError: the file cannot be read (missing, a directory, no permission).
    """
    h = hashlib.sha256()
    size = 0
    with _open_bytes(path) as f:
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


def manifest_link(directory: str) -> Dict[str, object]:
    """How a manifest names the directory it was made from: its absolute path
    and the sha256 of its manifest.json, which identifies it even after it
    moved (`featurebridge lineage --verify` recomputes it).

    Raises:
      OSError: `directory` has no readable manifest.json.
    """
    path = os.path.abspath(directory)
    return {"path": path, "manifest_sha256": file_digest(os.path.join(path, MANIFEST))["sha256"]}


def model_link(model: str) -> Dict[str, object]:
    """The link a predictions manifest records to its model: the model
    directory's `manifest_link` and the serving export used (its directory,
    version and the sha256 of its saved_model.pb).

    Args:
      model: what the user passed: the model directory, or its serving
        export (MODEL/serving, MODEL/serving/<version>).

    Returns:
      {"path", "manifest_sha256", "serving": {"path", "version",
      "saved_model_sha256"}}; "path" and "manifest_sha256" are None when no
      manifest.json is found at or above `model` (a SavedModel copied out
      of its model directory).

    Raises:
      ModelDirError: `model` is not a featurebridge model.
    """
    from featurebridge.transforms import layout

    model = os.path.abspath(model)
    serving = os.path.abspath(layout.serving_dir(model))
    link: Dict[str, object] = {"path": None, "manifest_sha256": None}
    # The model directory: `model` itself, or the nearest folder above the
    # export that holds a manifest (MODEL/serving/<version> -> MODEL).
    candidate = serving
    for _ in range(3):
        if os.path.isfile(os.path.join(candidate, MANIFEST)):
            link = manifest_link(candidate)
            break
        candidate = os.path.dirname(candidate)
    version = os.path.basename(serving)
    link["serving"] = {
        "path": serving,
        "version": int(version) if version.isdigit() else None,
        "saved_model_sha256": file_digest(os.path.join(serving, "saved_model.pb"))["sha256"],
    }
    return link


def module_digest(reference: Optional[str]) -> Optional[Dict[str, object]]:
    """The source file of a user's ``module:function`` preprocessing_fn and its
    sha256, for the manifest (the code that made an output, not only its name).

    Returns:
      None when `reference` is empty, or its module is not imported or has no
      source file (a compiled or built-in module).
    """
    import inspect
    import sys

    if not reference:
        return None
    module = sys.modules.get(reference.partition(":")[0])
    try:
        source = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # a built-in module
        source = None
    if not source or not os.path.isfile(source):
        return None
    digest = file_digest(os.path.abspath(source))
    return {"reference": reference, "path": digest["path"], "bytes": digest["bytes"], "sha256": digest["sha256"]}
