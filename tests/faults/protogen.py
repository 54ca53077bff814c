"""Hypothesis strategies for any protobuf message, built from its descriptor.

Every field may be left unset or given a value of its type: integers over
their whole range (small ones more often), enum numbers known and unknown,
strings empty, plausible (ids and slugs that exist), unicode, control
characters or huge, timestamps inside and far outside the valid range, and
nested messages down to a depth limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

MAX_DEPTH = 3
HUGE = ("x" * 100_000, "é" * 20_000, "🙂" * 5_000)
ODD = (
    "",
    " ",
    "\t\n",
    "\x00",
    "null",
    "'; DROP TABLE referrals; --",
    "../../etc/passwd",
    "ي" * 300,
)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 6 has `is_repeated`; older versions only `label`.
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(getattr(field, "label", None) == FieldDescriptor.LABEL_REPEATED)


def strings(pool: Sequence[str] = ()) -> st.SearchStrategy[str]:
    choices = [
        st.text(alphabet=st.characters(codec="utf-8"), max_size=24),
        st.sampled_from(ODD),
        st.sampled_from(HUGE),
    ]
    if pool:
        # Often a value that exists, so that requests get past validation.
        choices[:0] = [st.sampled_from(list(pool))] * 3
    return st.one_of(*choices)


def timestamps() -> st.SearchStrategy[Timestamp]:
    seconds = st.one_of(
        st.integers(1_500_000_000, 2_000_000_000),  # around now
        st.integers(-62_135_596_800, 253_402_300_799),  # the valid range
        st.integers(-(2**63), 2**63 - 1),  # anything an int64 holds
    )
    nanos = st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1))
    return st.builds(lambda s, n: Timestamp(seconds=s, nanos=n), seconds, nanos)


def _scalar(field: FieldDescriptor, pool: Sequence[str]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings(pool)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return st.one_of(st.integers(max(low, -3), 50), st.integers(low, high))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values] if field.enum_type else [0]
        return st.one_of(
            st.sampled_from(known), st.integers(-5, 300), st.integers(-(2**31), 2**31 - 1)
        )
    raise TypeError(f"unsupported field type {kind} ({field.full_name})")


def _value(
    field: FieldDescriptor, depth: int, pool: Sequence[str]
) -> st.SearchStrategy[Any] | None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        nested = field.message_type
        if nested is None or depth >= MAX_DEPTH or nested.GetOptions().map_entry:
            return None  # (no map fields in Masar's protos)
        return messages(nested, pool=pool, depth=depth + 1)
    return _scalar(field, pool)


def messages(
    descriptor: Descriptor, *, pool: Sequence[str] = (), depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with random fields set."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return timestamps()
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _value(field, depth, pool)
        if value is None:
            continue
        if _repeated(field):
            optional[field.name] = st.lists(value, max_size=3)
        else:
            optional[field.name] = value

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            if _repeated(field):
                target = getattr(message, name)
                if field.message_type is not None:
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif field.message_type is not None:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)
