"""Hypothesis strategies for any protobuf message, built from its descriptor:
random and hostile field values, and raw bytes that do or do not parse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from support.reflected_rpcs import message_class

# `Message.field` or `field` -> the strategy its values come from instead of
# random ones: values that reach further into a service, or random ones made
# safe. The first form wins.
Hints = Mapping[str, st.SearchStrategy[Any]]

HOSTILE_TEXT = (
    "",
    " ",
    ".",
    "..",
    "../",
    "../../../../etc/passwd",
    "/etc/passwd",
    "steps/../../x",
    "%2e%2e%2f",
    "\x00",
    "a\nb\r\nc",
    "-rf",
    "$(id)",
    "`id`",
    "'; DROP TABLE steps; --",
    "\u202eevil",
    "\U0001f600" * 8,
    "é" * 70,
    "C:\\Windows\\system32",
)
MAX_TEXT = 100_000
# Protobuf stops parsing nested groups at 100 levels.
MAX_PARSED_DEPTH = 90

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def texts() -> st.SearchStrategy[str]:
    """Short unicode, hostile paths and commands, and strings up to ~100 KB."""
    huge = st.builds(
        lambda character, count: character * count,
        st.characters(exclude_categories=["Cs"]),
        st.integers(1_000, MAX_TEXT),
    )
    return st.one_of(st.text(max_size=80), st.sampled_from(HOSTILE_TEXT), huge)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draws from each strategy about as often as its weight says, which
    `one_of` does not promise."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def messages(
    descriptor: Descriptor, hints: Hints | None = None, depth: int = 6
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set to random values,
    or for a hinted field (at any depth) to its hint's."""
    given = dict(hints or {})
    always: dict[str, st.SearchStrategy[Any]] = {}
    maybe: dict[str, st.SearchStrategy[Any]] = {}
    for item in descriptor.fields:
        if depth <= 0 and item.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        # Aimed fields and nested messages are always there, so that requests
        # get past their first checks; a oneof's members come and go, since
        # only one of them survives.
        aimed = _hint(item, given) is not None or (
            item.type == FieldDescriptor.TYPE_MESSAGE and not item.is_repeated
        )
        target = always if aimed and item.containing_oneof is None else maybe
        target[item.name] = _field(item, given, depth)
    return st.fixed_dictionaries(always, optional=maybe).map(
        lambda values: _build(descriptor, values)
    )


def streams(
    descriptor: Descriptor, hints: Hints | None = None, max_size: int = 4
) -> st.SearchStrategy[list[Message]]:
    """Request streams: random sequences, and sequences that keep the protos'
    convention of a header (the first member of the message's oneof) followed
    by other members, so that random content gets past the first message."""
    given = dict(hints or {})
    random = st.lists(messages(descriptor, given), max_size=max_size)
    if not descriptor.oneofs or len(descriptor.oneofs[0].fields) < 2:
        return random
    first, *others = descriptor.oneofs[0].fields
    conventional = st.builds(
        lambda head, tail: [head, *tail],
        _only(descriptor, first, given),
        st.lists(
            st.one_of([_only(descriptor, item, given) for item in others]),
            max_size=max_size - 1,
        ),
    )
    return weighted((1, random), (3, conventional))


def stream_mutants(
    bases: st.SearchStrategy[list[Message]], hints: Hints | None = None
) -> st.SearchStrategy[list[Message]]:
    """Streams that work, drawn from `bases`, with one message mutated, dropped
    or sent twice: random content that gets as far as the rest allows."""
    given = dict(hints or {})

    def mutate(base: list[Message], index: int) -> st.SearchStrategy[list[Message]]:
        changed = mutants(base[index], given).map(
            lambda message: [*base[:index], message, *base[index + 1 :]]
        )
        dropped = st.just([*base[:index], *base[index + 1 :]])
        doubled = st.just([*base[: index + 1], *base[index:]])
        return weighted((4, changed), (1, dropped), (1, doubled))

    return bases.flatmap(
        lambda base: st.integers(0, len(base) - 1).flatmap(
            lambda index: mutate(base, index)
        )
    )


def mutants(base: Message, hints: Hints | None = None) -> st.SearchStrategy[Message]:
    """`base` with one field, at any depth, cleared or set to a random value."""
    given = dict(hints or {})
    paths = _paths(_descriptor_of(base), 4)

    def mutate(path: tuple[FieldDescriptor, ...]) -> st.SearchStrategy[Message]:
        values = st.one_of(st.none(), _field(path[-1], given, 4))
        return values.map(lambda value: _replaced(base, path, value))

    return st.sampled_from(paths).flatmap(mutate)


def decodable_bytes(
    descriptor: Descriptor, hints: Hints | None = None
) -> st.SearchStrategy[bytes]:
    """Serialized messages mixed with unknown fields of every wire type and
    nested groups, which a parser must accept and skip."""
    serialized = messages(descriptor, hints).map(lambda item: item.SerializeToString())
    parts = st.lists(st.one_of(serialized, unknown_fields()), min_size=1, max_size=5)
    return parts.map(b"".join)


def undecodable_bytes(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes that cannot parse as `descriptor`: random ones behind a tag of a
    wire type that does not exist, a length past the end, groups nested past
    the parser's limit, and a string field that is not UTF-8."""
    choices: list[st.SearchStrategy[bytes]] = [
        st.binary(max_size=200).map(lambda data: _tag(1, 7) + data),
        st.binary(max_size=200).map(
            lambda data: _tag(9_999, 2) + _varint(len(data) + 1) + data
        ),
        st.integers(101, 5_000).map(lambda depth: _group(9_999, depth)),
    ]
    strings = [
        item.number
        for item in descriptor.fields
        if item.type == FieldDescriptor.TYPE_STRING
    ]
    if strings:
        choices.append(
            st.sampled_from(strings).map(
                lambda number: _tag(number, 2) + _varint(2) + b"\xff\xfe"
            )
        )
    return st.one_of(choices)


def unknown_fields() -> st.SearchStrategy[bytes]:
    numbers = st.integers(1_000, 2**29 - 1)
    varints = st.builds(
        lambda number, value: _tag(number, 0) + _varint(value),
        numbers,
        st.integers(0, 2**64 - 1),
    )
    fixed = st.builds(
        lambda number, size, data: _tag(number, 1 if size == 8 else 5) + data[:size],
        numbers,
        st.sampled_from([4, 8]),
        st.binary(min_size=8, max_size=8),
    )
    delimited = st.builds(
        lambda number, data: _tag(number, 2) + _varint(len(data)) + data,
        numbers,
        st.binary(max_size=300),
    )
    groups = st.builds(_group, numbers, st.integers(1, MAX_PARSED_DEPTH))
    return st.one_of(varints, fixed, delimited, groups)


def parses(descriptor: Descriptor, data: bytes) -> bool:
    try:
        message_class(descriptor).FromString(data)
    except DecodeError:
        return False
    return True


def _paths(descriptor: Descriptor, depth: int) -> list[tuple[FieldDescriptor, ...]]:
    found: list[tuple[FieldDescriptor, ...]] = []
    for item in descriptor.fields:
        found.append((item,))
        nested = item.message_type
        if nested is not None and not item.is_repeated and depth > 1:
            found += [(item, *rest) for rest in _paths(nested, depth - 1)]
    return found


def _replaced(base: Message, path: tuple[FieldDescriptor, ...], value: Any) -> Message:
    copy = type(base)()
    copy.CopyFrom(base)
    parent = copy
    for item in path[:-1]:
        parent = getattr(parent, item.name)
    last = path[-1]
    parent.ClearField(last.name)
    if value is not None:
        parent.MergeFrom(_build(_descriptor_of(parent), {last.name: value}))
    return copy


def _descriptor_of(message: Message) -> Descriptor:
    # The stubs type it as either of protobuf's two implementations.
    descriptor: Any = message.DESCRIPTOR
    return descriptor  # type: ignore[no-any-return]


def _only(
    descriptor: Descriptor, item: FieldDescriptor, hints: dict[str, Any]
) -> st.SearchStrategy[Message]:
    return _field(item, hints, 6).map(
        lambda value: _build(descriptor, {item.name: value})
    )


def _field(
    item: FieldDescriptor, hints: dict[str, st.SearchStrategy[Any]], depth: int
) -> st.SearchStrategy[Any]:
    entry = item.message_type
    if entry is not None and entry.GetOptions().map_entry:
        return st.dictionaries(
            _single(entry.fields_by_name["key"], hints, depth),
            _single(entry.fields_by_name["value"], hints, depth),
            max_size=3,
        )
    if item.is_repeated:
        return st.lists(_single(item, hints, depth), max_size=3)
    return _single(item, hints, depth)


def _single(
    item: FieldDescriptor, hints: dict[str, st.SearchStrategy[Any]], depth: int
) -> st.SearchStrategy[Any]:
    if item.type == FieldDescriptor.TYPE_MESSAGE:
        assert item.message_type is not None
        return messages(item.message_type, hints, depth - 1)
    hint = _hint(item, hints)
    return _scalar(item) if hint is None else hint


def _hint(
    item: FieldDescriptor, hints: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any] | None:
    assert item.containing_type is not None
    return hints.get(f"{item.containing_type.name}.{item.name}", hints.get(item.name))


def _scalar(item: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = item.type
    if kind == FieldDescriptor.TYPE_STRING:
        return texts()
    if kind == FieldDescriptor.TYPE_BYTES:
        # Up to just past the 1 MiB a chunk may hold.
        large = st.integers(0, 1024 * 1024 + 16).map(lambda size: b"\x01" * size)
        return st.one_of(st.binary(max_size=300), large)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert item.enum_type is not None
        known = [value.number for value in item.enum_type.values]
        # Proto3 enums are open: any int32 travels, known or not.
        return weighted(
            (3, st.sampled_from(known)), (1, st.integers(-(2**31), 2**31 - 1))
        )
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    low, high = _INT_RANGES[kind]
    return st.one_of(st.integers(max(low, -5), 5), st.integers(low, high))


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = message_class(descriptor)()
    for name, value in values.items():
        item = descriptor.fields_by_name[name]
        target = getattr(message, name)
        is_message = item.type == FieldDescriptor.TYPE_MESSAGE
        if isinstance(value, dict):
            entry_value = item.message_type.fields_by_name["value"]  # type: ignore[union-attr]
            for key, entry in value.items():
                if entry_value.type == FieldDescriptor.TYPE_MESSAGE:
                    target[key].CopyFrom(entry)
                else:
                    target[key] = entry
        elif isinstance(value, list):
            for element in value:
                if is_message:
                    target.add().CopyFrom(element)
                else:
                    target.append(element)
        elif is_message:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _group(number: int, depth: int) -> bytes:
    return _tag(number, 3) * depth + _tag(number, 4) * depth
