"""The construction worker: the process that builds expansions.

Constructing a stage (parsing its spec, tracing TFT's graph, building the Beam
sub-graph) is the one part of an Expand whose time and memory depend on what
the caller sent, so it runs here, in a child process the service can kill:
past the request's deadline, past its memory budget, when the caller leaves
or when the service stops. Python threads cannot be stopped; a process can.

The service (`workers`) starts this module as
``python -m featurebridge.expansion_service.construction --read_fd R --write_fd W``,
sends one init message (the environment every expansion gets, the allowed
roots, the spec limits), waits for "ready" (the heavy imports done), then
sends one request at a time: the identifier and checked configuration of an
allowlisted stage, and the pruned ExpansionRequest (already through the gate).
The reply is the serialized ExpansionResponse, or an error message: a
caller's error (a `FeaturebridgeError`) as its text; anything else as its
class name only, with the traceback in the log under the request id.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Optional, Sequence

from featurebridge.expansion_service import frames, gate, registry
from featurebridge.expansion_service.logs import setup_logging

__all__ = ["construct", "main"]

_LOG = logging.getLogger("featurebridge.expansion_service.construction")


def construct(pruned, transform, entry, environment, options=None):
    """The ExpansionResponse for `transform` applied to the pruned request's inputs.

    Args:
      pruned: the ExpansionRequest after `gate.prune_request` (inputs, their
        coders and windowing, and an Impulse producer per input).
      transform: the constructed PTransform (`registry.Entry.build`).
      entry: its registry entry.
      environment: the Beam Environment every expanded transform gets.
      options: PipelineOptions of the construction pipeline (default:
        sdk_location=container).

    Raises:
      FeaturebridgeError: the stage refuses its input (wrong number of inputs,
        fields missing...), with a message for the caller.
      RuntimeError: an output would not use the row coder (a bug).
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability.api import beam_expansion_api_pb2
    from apache_beam.runners import pipeline_context
    from apache_beam.transforms import external

    pipeline = beam.Pipeline(options=options or PipelineOptions(sdk_location="container"))
    context = pipeline_context.PipelineContext(
        pruned.components,
        default_environment=environment,
        namespace=pruned.namespace,
        requirements=pruned.requirements,
    )
    producers = {
        pid: (context.transforms.get_by_id(tid), tag)
        for tid, t in pruned.components.transforms.items()
        for tag, pid in t.outputs.items()
    }
    inputs = {}
    for tag, pid in pruned.transform.inputs.items():
        pcoll = context.pcollections.get_by_id(pid)
        pcoll.pipeline = pipeline
        pcoll.producer, pcoll.tag = producers[pid]
        context.pcollections._obj_to_id[pcoll] = pid
        inputs[tag] = pcoll
    gate.check_input_count(entry, list(inputs))
    pvalue = next(iter(inputs.values()))
    with external.ExternalTransform.outer_namespace(pruned.namespace):
        result = pipeline.apply(transform, pvalue, pruned.transform.unique_name)
        expanded = pipeline._root_transform().parts[-1]
        expanded.outputs = dict(result)
        proto = pipeline.to_runner_api(context=context)
    expanded_id = context.transforms.get_id(expanded)
    transform_proto = proto.components.transforms.pop(expanded_id)
    transform_proto.inputs.clear()
    transform_proto.inputs.update(pruned.transform.inputs)
    for tid in list(proto.root_transform_ids) + list(pruned.components.transforms):
        proto.components.transforms.pop(tid, None)
    for tag, pid in transform_proto.outputs.items():
        coder = proto.components.coders[proto.components.pcollections[pid].coder_id]
        if coder.spec.urn != gate.ROW_CODER_URN:
            raise RuntimeError(f"output {tag} would use coder {coder.spec.urn}, not {gate.ROW_CODER_URN}")
    return beam_expansion_api_pb2.ExpansionResponse(
        components=proto.components, transform=transform_proto, requirements=proto.requirements
    )


def _serve_one(header: dict, body: bytes, environment, roots) -> tuple:
    """(reply header, reply body) for one request message."""
    from apache_beam.portability.api import beam_expansion_api_pb2

    rid = header.get("rid", "-")
    started = time.monotonic()
    try:
        pruned = beam_expansion_api_pb2.ExpansionRequest.FromString(body)
        entry = registry.by_identifier(header["identifier"])
        transform = entry.build(header["config"], roots)
        response = construct(pruned, transform, entry, environment)
    except Exception as e:  # Every failure becomes a safe reply.
        if gate.is_caller_error(e):
            _LOG.warning("[%s] construction refused: %s", rid, e)
            return {"ok": False, "caller": True, "message": str(e)}, b""
        _LOG.exception("[%s] construction failed", rid)
        return {"ok": False, "caller": False, "message": type(e).__name__}, b""
    _LOG.info("[%s] constructed %s in %.2f s", rid, header["identifier"], time.monotonic() - started)
    return {"ok": True}, response.SerializeToString()


# What every construction imports: loaded before "ready", so the first
# request does not pay for it.
_WARM_UP_MODULES = ("apache_beam", "tensorflow", "tensorflow_transform.beam", "featurebridge.transforms.xlang")


def _warm_up() -> None:
    import importlib

    for name in _WARM_UP_MODULES:
        importlib.import_module(name)


def serve(read_stream, write_stream) -> int:
    """Reads the init message, warms up, then answers requests until the pipe closes."""
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners import pipeline_context
    from apache_beam.transforms import environments

    from featurebridge.transforms import spec_limits

    init = frames.read_message(read_stream)
    if init is None:
        return 0
    header, body = init
    environment = environments.Environment.from_runner_api(
        beam_runner_api_pb2.Environment.FromString(body), pipeline_context.PipelineContext()
    )
    roots = tuple(header["roots"])
    spec_limits.set_active_limits(spec_limits.parse_limit_overrides(header.get("spec_limits") or []))
    started = time.monotonic()
    _warm_up()
    frames.write_message(write_stream, {"ready": True, "warm_up_s": round(time.monotonic() - started, 2)})
    while True:
        message = frames.read_message(read_stream)
        if message is None:
            return 0
        reply, reply_body = _serve_one(*message, environment, roots)
        frames.write_message(write_stream, reply, reply_body)


def _die_with_parent() -> None:
    """On Linux, asks the kernel to SIGKILL this worker when the service dies,
    however it dies (elsewhere the closed pipe ends the worker once idle)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the service died before the request took effect
        os._exit(1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="featurebridge expansion construction worker")
    parser.add_argument("--read_fd", type=int, required=True)
    parser.add_argument("--write_fd", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent()
    setup_logging()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with os.fdopen(args.read_fd, "rb") as read_stream, os.fdopen(args.write_fd, "wb") as write_stream:
        return serve(read_stream, write_stream)


if __name__ == "__main__":
    sys.exit(main())
