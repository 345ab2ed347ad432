"""The artifacts the expansion service stages for its environment, and the
only artifacts it serves.

Each staged file gets an opaque id (``featurebridge-artifact:<sha256>``) that
appears as the path of a FILE artifact in the environments the service
returns; retrieval looks the id up in the `ArtifactStore` and never treats a
caller's string as a path or URL. `stage_project` fills a store with
featurebridge's own package (built from the source tree when none is given).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

from featurebridge.expansion_service.gate import RefusedError
from featurebridge.transforms.errors import excerpt

__all__ = [
    "ARTIFACT_ID_PREFIX",
    "ArtifactStore",
    "FILE_ARTIFACT_URN",
    "STAGING_TO_ROLE_URN",
    "StagedArtifact",
    "build_project_sdist",
    "stage_project",
]

ARTIFACT_ID_PREFIX = "featurebridge-artifact:"
FILE_ARTIFACT_URN = "beam:artifact:type:file:v1"
STAGING_TO_ROLE_URN = "beam:artifact:role:staging_to:v1"


@dataclass
class StagedArtifact:
    """One staged file: its id, where it is, the name workers stage it under, its digest."""

    artifact_id: str
    path: str
    staged_name: str
    sha256: str


class ArtifactStore:
    """The files this service staged for its environment, served by opaque id.

    The ids (``featurebridge-artifact:<sha256>``) appear as the path of FILE
    artifacts in environments this service returns; retrieval looks the id up
    here and never interprets a caller-supplied string as a path or URL. An
    empty store (nothing staged) serves nothing.
    """

    def __init__(self):
        self._by_id: Dict[str, StagedArtifact] = {}

    def add(self, path: str, staged_name: str) -> str:
        """Stages the file at `path` under `staged_name`; returns its id.

        Raises:
          OSError: the file cannot be read.
        """
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sha = digest.hexdigest()
        artifact_id = ARTIFACT_ID_PREFIX + sha
        self._by_id[artifact_id] = StagedArtifact(artifact_id, os.path.abspath(path), staged_name, sha)
        return artifact_id

    def artifacts(self) -> List[object]:
        """ArtifactInformation protos for an environment's dependencies, by
        staged name (empty when nothing is staged)."""
        from apache_beam.portability.api import beam_runner_api_pb2

        return [
            beam_runner_api_pb2.ArtifactInformation(
                type_urn=FILE_ARTIFACT_URN,
                type_payload=beam_runner_api_pb2.ArtifactFilePayload(path=s.artifact_id, sha256=s.sha256).SerializeToString(),
                role_urn=STAGING_TO_ROLE_URN,
                role_payload=beam_runner_api_pb2.ArtifactStagingToRolePayload(staged_name=s.staged_name).SerializeToString(),
            )
            for s in sorted(self._by_id.values(), key=lambda s: s.staged_name)
        ]

    def lookup(self, artifact) -> StagedArtifact:
        """The staged file an ArtifactInformation names.

        Raises:
          RefusedError: anything but a FILE artifact whose path is one of our ids.
        """
        from apache_beam.portability.api import beam_runner_api_pb2

        allowed = f"only the artifacts this service staged, named by id {sorted(self._by_id)}"
        if artifact.type_urn != FILE_ARTIFACT_URN:
            raise RefusedError(f"artifact type {excerpt(artifact.type_urn)} is not served; this service serves {allowed}.")
        try:
            payload = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload)
        except Exception:
            raise RefusedError(f"the artifact payload is not a valid protobuf message; this service serves {allowed}.") from None
        staged = self._by_id.get(payload.path)
        if staged is None:
            raise RefusedError(f"that artifact is not served (paths and URLs never are); this service serves {allowed}.")
        return staged


def stage_project(store: ArtifactStore, work_dir: str, package: Optional[str] = None,
                  requirements_file: Optional[str] = None) -> None:
    """Stages featurebridge's package, the ``extra_packages.txt`` that names it
    (so SDK workers install it), and an optional requirements.txt.

    Args:
      store: where to stage.
      work_dir: where to build the package and write the listing.
      package: a featurebridge sdist/wheel; None builds one from the source tree.
      requirements_file: staged as ``requirements.txt`` when given.

    Raises:
      RuntimeError: the package cannot be built (see `build_project_sdist`).
      OSError: a file cannot be read or written.
    """
    package = package or build_project_sdist(os.path.join(work_dir, "dist"))
    name = os.path.basename(package)
    store.add(package, name)
    listing = os.path.join(work_dir, "extra_packages.txt")
    with open(listing, "w", encoding="utf-8") as f:
        f.write(name + "\n")
    store.add(listing, "extra_packages.txt")
    if requirements_file:
        store.add(requirements_file, "requirements.txt")


def build_project_sdist(dest_dir: str) -> str:
    """Builds this project's sdist from its source tree into `dest_dir`.

    Raises:
      RuntimeError: no setup.py beside the packages (an installed copy): pass
        the package with ``--package`` instead; or the build failed.
    """
    import featurebridge.transforms

    root = os.path.dirname(os.path.dirname(os.path.abspath(featurebridge.transforms.__file__)))
    if not os.path.exists(os.path.join(root, "setup.py")):
        raise RuntimeError(
            "featurebridge's source tree (setup.py) is not available to build the package to "
            "stage; pass --package PATH with a featurebridge sdist or wheel."
        )
    egg_base = tempfile.mkdtemp(prefix="fb_egg_")
    try:
        result = subprocess.run(
            [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", egg_base, "sdist", "--dist-dir", dest_dir],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(egg_base, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"building featurebridge's sdist failed:\n{result.stderr[-2000:]}")
    built = [f for f in os.listdir(dest_dir) if f.endswith(".tar.gz")]
    if len(built) != 1:
        raise RuntimeError(f"expected one sdist in {dest_dir}, found {built}")
    return os.path.join(dest_dir, built[0])
