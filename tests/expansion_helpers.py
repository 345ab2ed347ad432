"""What the expansion-service tests share: the stages' identifiers, the spec
and input Row type they use, and `start_server`, the service as a separate
process (a thin wrapper over the product's
`featurebridge.expansion_service.process.expansion_service_process`)."""

import contextlib
import os
import typing
from typing import Dict, Iterator, Optional

import apache_beam as beam

from featurebridge.expansion_service.process import ExpansionServiceProcess, expansion_service_process
from tests.repo import REPO_ROOT, worker_env

__all__ = [
    "ANALYZE_ID",
    "FQN_URN",
    "PREDICT_ID",
    "Raw",
    "SCHEMA_TRANSFORM_URN",
    "SPEC",
    "TRANSFORM_ID",
    "start_server",
]

ANALYZE_ID = "beam:schematransform:org.featurebridge:analyze_and_transform:v1"
TRANSFORM_ID = "beam:schematransform:org.featurebridge:transform:v1"
PREDICT_ID = "beam:schematransform:org.featurebridge:predict:v1"
FQN_URN = "beam:transforms:python:fully_qualified_named"
SCHEMA_TRANSFORM_URN = "beam:expansion:payload:schematransform:v1"

SPEC = """
key: id
label: {column: y, kind: binary}
columns:
  - {name: id, type: string}
  - {name: x, type: float, missing: mean, transforms: [zscore, {type: bucketize, num_buckets: 3}]}
  - {name: c, type: string, missing: {constant: none}, transforms: [vocabulary]}
  - {name: y, type: int}
"""


class Raw(typing.NamedTuple):
    id: Optional[str]
    x: Optional[float]
    c: Optional[str]
    y: Optional[int]


beam.coders.registry.register_coder(Raw, beam.coders.RowCoder)


@contextlib.contextmanager
def start_server(tmp_dir: str, *args: str, root: Optional[str] = None, own_root: bool = False,
                 env: Optional[Dict[str, str]] = None, name: str = "server") -> Iterator[ExpansionServiceProcess]:
    """Runs the expansion service on a free loopback port until the block ends,
    logging to ``tmp_dir/<name>.log``, with callers' directories confined to
    `root` (``--allowed_root``, unless `args` has its own; None: the parent of
    `tmp_dir`, pytest's base temporary directory for ``tmp_path_factory.mktemp``
    folders; `own_root`: no ``--allowed_root``, the service's own); `env` adds
    variables to the test environment (the checkout on PYTHONPATH)."""
    root_args = []
    if not own_root and "--allowed_root" not in args:
        root_args = ["--allowed_root", root or os.path.dirname(os.path.abspath(tmp_dir))]
    with expansion_service_process(args=[*root_args, *args], env=worker_env(env),
                                   log_path=os.path.join(tmp_dir, f"{name}.log"), cwd=REPO_ROOT) as server:
        yield server
