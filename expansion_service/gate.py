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
  caller's components, and each input must be Rows whose fields are plain
  values (no nested rows, arrays, maps or logical types);
- the transform's unique name and the namespace are short and printable.

Nothing here constructs a stage: `decode_transform` turns the payload into
the allowlisted entry and its string configuration, and the construction
worker (`construction`) builds it, in a process the service can kill.

Refusals raise `RefusedError` (or `registry.RegistryError`); both are
`FeaturebridgeError`s, whose messages are written for the caller. `is_caller_error`
is the one test the service uses to tell such errors from bugs.
"""

from __future__ import annotations

from typing import Dict, Iterable, Sequence

from featurebridge.expansion_service import registry
from featurebridge.expansion_service.row_bytes import check_row_bytes
from featurebridge.transforms.errors import FeaturebridgeError, excerpt

__all__ = [
    "ALLOWED_CODER_URNS",
    "ALLOWED_LOGICAL_TYPE_URNS",
    "ALLOWED_WINDOW_FN_URNS",
    "IMPULSE_URN",
    "INPUT_FIELD_TYPES",
    "MAX_NAME_CHARS",
    "ROW_CODER_URN",
    "RefusedError",
    "check_input_count",
    "check_names",
    "check_schema",
    "decode_transform",
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
# The transform's unique_name and the request's namespace: every sub-transform
# of the expansion carries them, so their length multiplies the response.
MAX_NAME_CHARS = 256
# What an input Row field may be: plain values that become one Arrow column each.
INPUT_FIELD_TYPES = ("BYTE", "INT16", "INT32", "INT64", "FLOAT", "DOUBLE", "STRING", "BOOLEAN")
_STRING_LOGICAL_TYPES = ("beam:logical_type:var_char:v1", "beam:logical_type:fixed_char:v1")


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
            f"{where} uses logical type(s) {[excerpt(u) for u in bad[:5]]}, which this service never decodes "
            "(python_callable and pythonsdk_any carry code). Allowed logical types: "
            f"{sorted(ALLOWED_LOGICAL_TYPE_URNS)}; send plain strings and numbers."
        )


def _check_coder(components, coder_id: str, seen: set) -> None:
    if coder_id in seen:
        return
    seen.add(coder_id)
    if coder_id not in components.coders:
        # Beam's PipelineContext would unpickle a dangling coder id: refuse.
        raise RefusedError(f"coder id {excerpt(coder_id)} is referenced but not defined in the components.")
    coder = components.coders[coder_id]
    if coder.spec.urn not in ALLOWED_CODER_URNS:
        raise RefusedError(
            f"input coder {excerpt(coder.spec.urn)} is not allowed; inputs must use the portable "
            f"row coder ({ROW_CODER_URN}) or another standard coder: {sorted(ALLOWED_CODER_URNS)}."
        )
    if coder.spec.urn == ROW_CODER_URN:
        from apache_beam.portability.api import schema_pb2

        check_schema(schema_pb2.Schema.FromString(coder.spec.payload), "an input Row schema")
    for sub in coder.component_coder_ids:
        _check_coder(components, sub, seen)


def check_names(request) -> None:
    """Refuses a unique_name or namespace that is long or holds control characters.

    Raises:
      RefusedError: naming the field, its length and the bound (no echo of the value).
    """
    for field, value in (("the transform's unique_name", request.transform.unique_name),
                         ("the namespace", request.namespace)):
        if len(value) > MAX_NAME_CHARS:
            raise RefusedError(
                f"{field} is {len(value)} characters long; the most this service takes is "
                f"{MAX_NAME_CHARS}. Use a short name."
            )
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise RefusedError(f"{field} {excerpt(value)} holds control characters; use printable text.")


def _field_kind(ft) -> str:
    which = ft.WhichOneof("type_info")
    if which == "atomic_type":
        from apache_beam.portability.api import schema_pb2

        return schema_pb2.AtomicType.Name(ft.atomic_type)
    if which == "logical_type":
        return "STRING" if ft.logical_type.urn in _STRING_LOGICAL_TYPES else f"logical type {excerpt(ft.logical_type.urn)}"
    return {"row_type": "ROW", "array_type": "ARRAY", "iterable_type": "ITERABLE", "map_type": "MAP"}.get(which, str(which))


def _check_input_fields(components, coder_id: str, tag: str) -> None:
    """Refuses an input that is not Rows of plain fields, naming the field."""
    from apache_beam.portability.api import schema_pb2

    coder = components.coders[coder_id]
    while coder.spec.urn == "beam:coder:length_prefix:v1" and coder.component_coder_ids:
        coder = components.coders[coder.component_coder_ids[0]]
    if coder.spec.urn != ROW_CODER_URN:
        raise RefusedError(
            f"input {excerpt(tag)} is not a PCollection of Rows (its coder is {excerpt(coder.spec.urn)}); "
            f"send Rows ({ROW_CODER_URN}) with one field per raw column."
        )
    for f in schema_pb2.Schema.FromString(coder.spec.payload).fields:
        kind = _field_kind(f.type)
        if kind not in INPUT_FIELD_TYPES:
            raise RefusedError(
                f"input {excerpt(tag)} field {excerpt(f.name)} is {kind}; input fields must be one of "
                f"{list(INPUT_FIELD_TYPES)} (nullable), one per raw column. Flatten nested rows, "
                "arrays and maps into columns first."
            )


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
            raise RefusedError(f"input {excerpt(tag)} names PCollection {excerpt(pid)}, which is not in the components.")
        pc = src.pcollections[pid]
        _check_coder(src, pc.coder_id, coders)
        _check_input_fields(src, pc.coder_id, tag)
        if pc.windowing_strategy_id not in src.windowing_strategies:
            raise RefusedError(f"input {excerpt(tag)} has no windowing strategy in the components.")
        ws = src.windowing_strategies[pc.windowing_strategy_id]
        if ws.window_fn.urn not in ALLOWED_WINDOW_FN_URNS:
            raise RefusedError(
                f"input window fn {excerpt(ws.window_fn.urn)} is not allowed; use one of {sorted(ALLOWED_WINDOW_FN_URNS)}."
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
            f"{list(entry.inputs)}; got {len(input_tags)} ({[excerpt(t) for t in sorted(input_tags)[:10]]})."
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
        # Beam's compiled decoder trusts lengths: walk the bytes first (row_bytes).
        check_row_bytes(schema, payload)
        return coders.RowCoder(schema).decode(payload)
    except Exception:  # Malformed bytes: say so, never echo decoder internals.
        raise RefusedError(f"{where}: the Row bytes do not match the Row schema sent with them.") from None


def _row_to_dict(row) -> Dict[str, object]:
    if row is None:
        return {}
    if isinstance(row, dict):
        return dict(row)
    return dict(row._asdict())


def decode_transform(transform_proto):
    """The registry entry and the checked string configuration an allowlisted
    request asks for (nothing is constructed here).

    Args:
      transform_proto: the request's PTransform (URN and payload).

    Returns:
      (registry.Entry, {field: str}) with exactly the entry's fields.

    Raises:
      RefusedError: a URN other than the two accepted, or a payload that does
        not parse or uses a refused logical type.
      RegistryError: an identifier or class name outside the allowlist, or a
        bad configuration (unknown, missing or non-string fields).
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
        row = _decode_row(st.configuration_schema, st.configuration_row, f"the configuration of {entry.identifier}")
        return entry, entry.check_config(_row_to_dict(row))
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
        return entry, entry.check_config(registry.fqn_config(entry, args, kwargs))
    raise RefusedError(
        f"transform URN {excerpt(urn)} is not accepted (pickled transforms and arbitrary "
        f"Python are never run here); use {registry.SCHEMA_TRANSFORM_URN} with one of "
        f"{[e.identifier for e in registry.ENTRIES]}, or {registry.FQN_URN} with one of "
        f"{[e.class_name for e in registry.ENTRIES]}."
    )
