"""The request gate: what a caller may ask the expansion service for.

Everything here runs on the caller's request *before* anything in it is
decoded or constructed:

- only two transform URNs are accepted: SchemaTransforms by allowlisted
  identifier, and ``fully_qualified_named`` for allowlisted class names (the
  table is `registry`); the pickled-transform URN and everything else is refused;
- every Row schema (configuration payloads, input coders) is walked, and
  logical types outside a small allowlist (``python_callable`` and
  ``pythonsdk_any`` included) are refused, as are coders and window fns
  outside an allowlist (pickled coders included);
- only the input PCollections and their coders/windowing are kept from the
  caller's components.

Refusals raise `RefusedError` (or `registry.RegistryError`); both are
`FeaturebridgeError`s, whose messages are written for the caller. `is_caller_error`
is the one test the service uses to tell such errors from bugs.
"""

from __future__ import annotations

from typing import Dict, Iterable, Sequence

from featurebridge.expansion_service import registry
from featurebridge.transforms.errors import FeaturebridgeError

__all__ = [
    "ALLOWED_CODER_URNS",
    "ALLOWED_LOGICAL_TYPE_URNS",
    "ALLOWED_WINDOW_FN_URNS",
    "IMPULSE_URN",
    "ROW_CODER_URN",
    "RefusedError",
    "build_transform",
    "check_input_count",
    "check_schema",
    "is_caller_error",
    "logical_type_urns",
    "prune_request",
]

# Logical types whose Python decoders only build plain values.
ALLOWED_LOGICAL_TYPE_URNS = frozenset(
    {
        "beam:logical_type:millis_instant:v1",
        "beam:logical_type:micros_instant:v1",
        "beam:logical_type:fixed_bytes:v1",
        "beam:logical_type:var_bytes:v1",
        "beam:logical_type:fixed_char:v1",
        "beam:logical_type:var_char:v1",
    }
)

# Coders the service decodes for inputs: standard, language-neutral ones only.
ALLOWED_CODER_URNS = frozenset(
    {
        "beam:coder:bytes:v1",
        "beam:coder:string_utf8:v1",
        "beam:coder:kv:v1",
        "beam:coder:bool:v1",
        "beam:coder:varint:v1",
        "beam:coder:double:v1",
        "beam:coder:iterable:v1",
        "beam:coder:length_prefix:v1",
        "beam:coder:global_window:v1",
        "beam:coder:interval_window:v1",
        "beam:coder:windowed_value:v1",
        "beam:coder:param_windowed_value:v1",
        "beam:coder:row:v1",
        "beam:coder:nullable:v1",
    }
)
ALLOWED_WINDOW_FN_URNS = frozenset(
    {
        "beam:window_fn:global_windows:v1",
        "beam:window_fn:fixed_windows:v1",
        "beam:window_fn:sliding_windows:v1",
        "beam:window_fn:session_windows:v1",
    }
)
ROW_CODER_URN = "beam:coder:row:v1"
IMPULSE_URN = "beam:transform:impulse:v1"
_MAX_SCHEMA_DEPTH = 16


class RefusedError(FeaturebridgeError, ValueError):
    """A request is refused; the message is safe to return to the caller."""


def is_caller_error(error: BaseException) -> bool:
    """Whether `error` is about what the caller sent (its message is written
    for the caller) rather than a bug: every `FeaturebridgeError` is, whether
    the gate, the registry or a stage raised it."""
    return isinstance(error, FeaturebridgeError)


# ---------------------------------------------------------------------------
# Schema and component checks.


def logical_type_urns(schema, depth: int = 0) -> Iterable[str]:
    """Every logical type URN used anywhere in a schema_pb2.Schema (nested rows,
    arrays, iterables, maps, logical types' representations and arguments).

    An empty schema yields nothing.

    Raises:
      RefusedError: the schema nests deeper than 16 levels.
    """
    if depth > _MAX_SCHEMA_DEPTH:
        raise RefusedError(f"schema nesting deeper than {_MAX_SCHEMA_DEPTH} levels is not allowed.")
    for f in schema.fields:
        yield from _field_type_urns(f.type, depth + 1)


def _field_type_urns(ft, depth: int) -> Iterable[str]:
    if depth > _MAX_SCHEMA_DEPTH:
        raise RefusedError(f"schema nesting deeper than {_MAX_SCHEMA_DEPTH} levels is not allowed.")
    which = ft.WhichOneof("type_info")
    if which == "logical_type":
        yield ft.logical_type.urn
        if ft.logical_type.HasField("representation"):
            yield from _field_type_urns(ft.logical_type.representation, depth + 1)
        if ft.logical_type.HasField("argument_type"):
            yield from _field_type_urns(ft.logical_type.argument_type, depth + 1)
    elif which == "row_type":
        yield from logical_type_urns(ft.row_type.schema, depth + 1)
    elif which in ("array_type", "iterable_type"):
        yield from _field_type_urns(getattr(ft, which).element_type, depth + 1)
    elif which == "map_type":
        yield from _field_type_urns(ft.map_type.key_type, depth + 1)
        yield from _field_type_urns(ft.map_type.value_type, depth + 1)


def check_schema(schema, where: str) -> None:
    """Refuses a schema that uses a logical type outside the allowlist.

    Raises:
      RefusedError: naming the logical type and what is allowed.
    """
    bad = sorted(set(logical_type_urns(schema)) - ALLOWED_LOGICAL_TYPE_URNS)
    if bad:
        raise RefusedError(
            f"{where} uses logical type(s) {bad}, which this service never decodes "
            "(python_callable and pythonsdk_any carry code). Allowed logical types: "
            f"{sorted(ALLOWED_LOGICAL_TYPE_URNS)}; send plain strings and numbers."
        )


def _check_coder(components, coder_id: str, seen: set) -> None:
    if coder_id in seen:
        return
    seen.add(coder_id)
    if coder_id not in components.coders:
        # Beam's PipelineContext would unpickle a dangling coder id: refuse.
        raise RefusedError(f"coder id {coder_id[:80]!r} is referenced but not defined in the components.")
    coder = components.coders[coder_id]
    if coder.spec.urn not in ALLOWED_CODER_URNS:
        raise RefusedError(
            f"input coder {coder.spec.urn[:100]!r} is not allowed; inputs must use the portable "
            f"row coder ({ROW_CODER_URN}) or another standard coder: {sorted(ALLOWED_CODER_URNS)}."
        )
    if coder.spec.urn == ROW_CODER_URN:
        from apache_beam.portability.api import schema_pb2

        check_schema(schema_pb2.Schema.FromString(coder.spec.payload), "an input Row schema")
    for sub in coder.component_coder_ids:
        _check_coder(components, sub, seen)


def prune_request(request):
    """A copy of `request` that keeps only the input PCollections, their
    (checked) coders and windowing strategies, and a synthetic Impulse
    producer per input. Caller transforms, environments and output coder
    requests are dropped: the service sets its own output types. A request
    without inputs gives a copy without components.

    Raises:
      RefusedError: an input is undefined or uses a refused coder or window fn.
    """
    from apache_beam.portability.api import beam_expansion_api_pb2, beam_runner_api_pb2

    src = request.components
    out = beam_expansion_api_pb2.ExpansionRequest(
        transform=request.transform, namespace=request.namespace, requirements=request.requirements
    )
    coders: set = set()
    for tag, pid in request.transform.inputs.items():
        if pid not in src.pcollections:
            raise RefusedError(f"input {tag[:80]!r} names PCollection {pid[:80]!r}, which is not in the components.")
        pc = src.pcollections[pid]
        _check_coder(src, pc.coder_id, coders)
        if pc.windowing_strategy_id not in src.windowing_strategies:
            raise RefusedError(f"input {tag[:80]!r} has no windowing strategy in the components.")
        ws = src.windowing_strategies[pc.windowing_strategy_id]
        if ws.window_fn.urn not in ALLOWED_WINDOW_FN_URNS:
            raise RefusedError(
                f"input window fn {ws.window_fn.urn[:100]!r} is not allowed; use one of {sorted(ALLOWED_WINDOW_FN_URNS)}."
            )
        _check_coder(src, ws.window_coder_id, coders)
        out.components.windowing_strategies[pc.windowing_strategy_id].CopyFrom(ws)
        out.components.pcollections[pid].CopyFrom(pc)
        out.components.transforms[f"featurebridge_input_{len(out.components.transforms)}"].CopyFrom(
            beam_runner_api_pb2.PTransform(
                unique_name=f"featurebridge_input_{tag}",
                spec=beam_runner_api_pb2.FunctionSpec(urn=IMPULSE_URN),
                outputs={tag: pid},
            )
        )
    for cid in coders:
        out.components.coders[cid].CopyFrom(src.coders[cid])
    return out


def check_input_count(entry, input_tags: Sequence[str]) -> None:
    """Refuses a request whose number of inputs is not the stage's.

    Raises:
      RefusedError: naming the stage's inputs and the tags received.
    """
    if len(input_tags) != len(entry.inputs):
        raise RefusedError(
            f"{entry.identifier} takes exactly {len(entry.inputs)} input PCollection "
            f"{list(entry.inputs)}; got {len(input_tags)} ({sorted(input_tags)[:10]})."
        )


# ---------------------------------------------------------------------------
# The requested transform, from its payload.


def _decode_row(schema, payload: bytes, where: str):
    check_schema(schema, where)
    for f in schema.fields:
        if not f.name:
            raise RefusedError(f"{where} has a field without a name.")
    from apache_beam import coders

    try:
        return coders.RowCoder(schema).decode(payload)
    except Exception:  # Malformed bytes: say so, never echo decoder internals.
        raise RefusedError(f"{where}: the Row bytes do not match the Row schema sent with them.") from None


def _row_to_dict(row) -> Dict[str, object]:
    if row is None:
        return {}
    if isinstance(row, dict):
        return dict(row)
    return dict(row._asdict())


def build_transform(transform_proto, allowed_roots: Sequence[str] = ()):
    """The registry entry and the PTransform for an allowlisted request.

    Args:
      transform_proto: the request's PTransform (URN and payload).
      allowed_roots: when non-empty, every directory in the configuration must
        lie under one of these.

    Returns:
      (registry.Entry, the constructed PTransform).

    Raises:
      RefusedError: a URN other than the two accepted, or a payload that does
        not parse or uses a refused logical type.
      RegistryError: an identifier or class name outside the allowlist, or a
        bad configuration.
      FeaturebridgeError: the stage's constructor refuses the values (SpecError, ...).
    """
    from apache_beam.portability.api import external_transforms_pb2

    urn = transform_proto.spec.urn
    payload = transform_proto.spec.payload
    if urn == registry.SCHEMA_TRANSFORM_URN:
        try:
            st = external_transforms_pb2.SchemaTransformPayload.FromString(payload)
        except Exception:
            raise RefusedError("the SchemaTransformPayload is not a valid protobuf message.") from None
        entry = registry.by_identifier(st.identifier)
        row = _decode_row(st.configuration_schema, st.configuration_row, f"the configuration of {st.identifier}")
        return entry, entry.build(_row_to_dict(row), allowed_roots)
    if urn == registry.FQN_URN:
        try:
            ext = external_transforms_pb2.ExternalConfigurationPayload.FromString(payload)
        except Exception:
            raise RefusedError("the ExternalConfigurationPayload is not a valid protobuf message.") from None
        row = _decode_row(ext.schema, ext.payload, "the PythonExternalTransform payload")
        constructor = getattr(row, "constructor", None)
        if not isinstance(constructor, str):
            raise RefusedError("the PythonExternalTransform payload has no 'constructor' string field.")
        entry = registry.by_class_name(constructor)
        args = tuple(getattr(row, "args", None) or ())
        kwargs = _row_to_dict(getattr(row, "kwargs", None))
        return entry, entry.build(registry.fqn_config(entry, args, kwargs), allowed_roots)
    raise RefusedError(
        f"transform URN {urn[:120]!r} is not accepted (pickled transforms and arbitrary "
        f"Python are never run here); use {registry.SCHEMA_TRANSFORM_URN} with one of "
        f"{[e.identifier for e in registry.ENTRIES]}, or {registry.FQN_URN} with one of "
        f"{[e.class_name for e in registry.ENTRIES]}."
    )
