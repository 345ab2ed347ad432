"""The SDK environment that transforms this service expands run in.

Every expansion returns the same environment, chosen when the service starts
(``--environment docker|process|external|embedded``), with the service's
staged artifacts as its dependencies, so the runner's SDK workers install
featurebridge before they run its stages.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from featurebridge.transforms.errors import UsageError

__all__ = ["ENVIRONMENT_KINDS", "default_docker_image", "make_environment"]

# --environment value -> Beam's environment_type.
ENVIRONMENT_KINDS = {
    "docker": "DOCKER",
    "process": "PROCESS",
    "external": "EXTERNAL",
    "embedded": "beam:env:embedded_python:v1",
}


def default_docker_image() -> str:
    """The SDK harness image built from the project's Dockerfile, tagged with
    featurebridge's, Beam's and Python's versions (0.1.0 when featurebridge
    is not installed)."""
    from importlib import metadata

    import apache_beam

    try:
        version = metadata.version("featurebridge")
    except metadata.PackageNotFoundError:
        version = "0.1.0"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"featurebridge-beam-sdk:{version}-beam{apache_beam.__version__}-py{py}"


def make_environment(kind: str, config: Optional[str], artifacts: Sequence[object]):
    """A Beam Environment of `kind` with `artifacts` as its dependencies.

    Args:
      kind: docker, process, external or embedded.
      config: docker: the image (None or empty: `default_docker_image`);
        process: JSON ``{"command": ...}``; external: the worker pool's
        host:port; embedded: ignored when empty.
      artifacts: ArtifactInformation protos (empty: no dependencies).

    Raises:
      UsageError (a ValueError): unknown kind, or a missing config for process/external.
    """
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners import pipeline_context
    from apache_beam.transforms import environments

    if kind not in ENVIRONMENT_KINDS:
        raise UsageError(f"--environment {kind!r} is not supported; use one of {sorted(ENVIRONMENT_KINDS)}.")
    if kind == "docker":
        config = config or default_docker_image()
    elif kind in ("process", "external") and not config:
        raise UsageError(
            f"--environment {kind} needs --environment_config "
            + ("('{\"command\": \"/path/to/boot\"}')" if kind == "process" else "(the worker pool's host:port)")
        )
    flags = {"environment_type": ENVIRONMENT_KINDS[kind], "sdk_location": "container"}
    if config:
        flags["environment_config"] = config
    env = environments.Environment.from_options(PipelineOptions(**flags))
    context = pipeline_context.PipelineContext()
    proto = env.to_runner_api(context)
    del proto.dependencies[:]
    proto.dependencies.extend(artifacts)
    return environments.Environment.from_runner_api(proto, context)
