"""A value valid against a JSON Schema, chosen deterministically: the mock's tool arguments and JSON answers.

Covers what tool parameters and `response_format` schemas use in practice (what Pydantic, Zod and the OpenAI
strict mode emit): types, objects, arrays, enums, consts, string lengths and common formats, numeric bounds
and `multipleOf`, `anyOf`/`oneOf`/`allOf`, and local `$ref`s, recursive ones included. A keyword that would
need a search to satisfy (`pattern`, `not`) raises `UnsupportedSchemaError` naming where it is, so a caller
hears why instead of receiving a value that does not validate.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from math import ceil, floor
from typing import Any

import msgspec

# How many `$ref`s deep a value may go before the generator takes the smallest value it can (null, empty,
# optional properties omitted), and how deep any schema may nest before it is refused as unending.
REF_DEPTH_SOFT_CAP = 3
NESTING_HARD_CAP = 48
# Bounds on what the generator will build, so a schema cannot make it allocate without limit.
MAX_ARRAY_ITEMS = 256
MAX_STRING_LENGTH = 4096
DEFAULT_MAX_ITEMS = 3
DEFAULT_NUMBER_SPAN = 100
UNIQUE_ATTEMPTS = 24

_NULL_FIRST = ("null", "boolean", "integer", "number", "string", "array", "object")
_STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
_NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"})
_OBJECT_KEYWORDS = frozenset(
    {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}
)
# Keywords that only annotate: a schema holding nothing else accepts any value.
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "$schema",
        "$id",
        "$defs",
        "definitions",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",
    }
)


class UnsupportedSchemaError(ValueError):
    """The schema asks for something the generator cannot produce (or nothing can satisfy)."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"{pointer}: {reason}")
        self.pointer = pointer
        self.reason = reason


def instance_of(schema: Mapping[str, Any] | bool, rng: random.Random, *, words: Sequence[str]) -> Any:
    """A value valid against `schema`; the same schema and the same `rng` state give the same value."""
    if not words:
        raise ValueError("instance_of needs at least one word to build strings from")
    return _Generator(schema, rng, words).value(schema, "#", refs=0, nesting=0)


class _Generator:
    def __init__(self, root: Mapping[str, Any] | bool, rng: random.Random, words: Sequence[str]) -> None:
        self.root = root
        self.rng = rng
        self.words = words

    # -- dispatch -------------------------------------------------------------------------------------------

    def value(self, schema: Any, pointer: str, *, refs: int, nesting: int) -> Any:
        if nesting > NESTING_HARD_CAP:
            raise UnsupportedSchemaError(
                pointer, f"nests deeper than {NESTING_HARD_CAP} levels (a recursion without end?)"
            )
        if schema is True:
            return self.words[self.rng.randrange(len(self.words))]
        if schema is False:
            raise UnsupportedSchemaError(pointer, "the schema `false` accepts no value")
        if not isinstance(schema, Mapping):
            raise UnsupportedSchemaError(
                pointer, f"a schema must be an object or a boolean, not {type(schema).__name__}"
            )
        if "$ref" in schema:
            return self._ref(schema, pointer, refs=refs, nesting=nesting)
        if "not" in schema:
            raise UnsupportedSchemaError(pointer, "`not` is not supported")
        if "allOf" in schema:
            return self.value(self._merged_all_of(schema, pointer), pointer, refs=refs, nesting=nesting + 1)
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return self._any_of(schema, keyword, pointer, refs=refs, nesting=nesting)
        if "const" in schema:
            return _copy(schema["const"])
        if "enum" in schema:
            return self._enum(schema, pointer)
        kind = self._type(schema, pointer, minimal=refs >= REF_DEPTH_SOFT_CAP)
        if kind == "null":
            return None
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "integer":
            return self._integer(schema, pointer)
        if kind == "number":
            return self._number(schema, pointer)
        if kind == "string":
            return self._string(schema, pointer)
        if kind == "array":
            return self._array(schema, pointer, refs=refs, nesting=nesting)
        if kind == "object":
            return self._object(schema, pointer, refs=refs, nesting=nesting)
        raise UnsupportedSchemaError(pointer, f"unknown type {kind!r}")

    def _type(self, schema: Mapping[str, Any], pointer: str, *, minimal: bool) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list):
            if not declared:
                raise UnsupportedSchemaError(pointer, "an empty `type` list accepts no value")
            kinds = [str(kind) for kind in declared]
            if minimal:
                return min(
                    kinds,
                    key=lambda kind: _NULL_FIRST.index(kind) if kind in _NULL_FIRST else len(_NULL_FIRST),
                )
            return kinds[self.rng.randrange(len(kinds))]
        if declared is not None:
            raise UnsupportedSchemaError(pointer, "`type` must be a string or a list of strings")
        keys = set(schema)
        for kind, keywords in (
            ("object", _OBJECT_KEYWORDS),
            ("array", _ARRAY_KEYWORDS),
            ("string", _STRING_KEYWORDS),
        ):
            if keys & keywords:
                return kind
        if keys & _NUMBER_KEYWORDS:
            return "number"
        return "string"

    # -- composition ----------------------------------------------------------------------------------------

    def _ref(self, schema: Mapping[str, Any], pointer: str, *, refs: int, nesting: int) -> Any:
        target = self._resolve(schema["$ref"], pointer)
        siblings = {key: value for key, value in schema.items() if key != "$ref" and key not in _ANNOTATIONS}
        resolved: Any = {"allOf": [target, siblings]} if siblings else target
        return self.value(resolved, f"{pointer}/$ref", refs=refs + 1, nesting=nesting + 1)

    def _resolve(self, ref: Any, pointer: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedSchemaError(pointer, f"only local `$ref`s (#/...) are supported, not {ref!r}")
        node: Any = self.root
        for part in (p.replace("~1", "/").replace("~0", "~") for p in ref[1:].split("/") if p):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise UnsupportedSchemaError(pointer, f"`$ref` {ref!r} points at nothing")
        return node

    def _deref(self, schema: Any, pointer: str) -> Any:
        """`schema` with any chain of bare `$ref`s followed, for merging (`allOf`) and branch inspection."""
        for _ in range(NESTING_HARD_CAP):
            if not (isinstance(schema, Mapping) and "$ref" in schema):
                return schema
            target = self._resolve(schema["$ref"], pointer)
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            schema = {**target, **siblings} if isinstance(target, Mapping) and siblings else target
        raise UnsupportedSchemaError(pointer, "`$ref`s that only point at each other")

    def _merged_all_of(self, schema: Mapping[str, Any], pointer: str) -> dict[str, Any]:
        parts = schema["allOf"]
        if not isinstance(parts, list):
            raise UnsupportedSchemaError(pointer, "`allOf` must be a list of schemas")
        merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
        for index, declared in enumerate(parts):
            where = f"{pointer}/allOf/{index}"
            part = self._deref(declared, where)
            if part is True:
                continue
            if part is False or not isinstance(part, Mapping):
                raise UnsupportedSchemaError(where, "accepts no value")
            merged = _merge(merged, self._merged_all_of(part, where) if "allOf" in part else part, where)
        return merged

    def _any_of(
        self, schema: Mapping[str, Any], keyword: str, pointer: str, *, refs: int, nesting: int
    ) -> Any:
        branches = schema[keyword]
        if not isinstance(branches, list) or not branches:
            raise UnsupportedSchemaError(pointer, f"`{keyword}` must be a non-empty list of schemas")
        rest = {key: value for key, value in schema.items() if key != keyword and key not in _ANNOTATIONS}
        order = list(range(len(branches)))
        if refs >= REF_DEPTH_SOFT_CAP:
            # Deep in a recursion: the branch that ends it (null, a scalar) first.
            order.sort(key=lambda i: self._branch_weight(branches[i], f"{pointer}/{keyword}/{i}"))
        else:
            self.rng.shuffle(order)
        failures: list[UnsupportedSchemaError] = []
        for index in order:
            branch = branches[index]
            candidate: Any = {"allOf": [rest, branch]} if rest else branch
            try:
                return self.value(candidate, f"{pointer}/{keyword}/{index}", refs=refs, nesting=nesting + 1)
            except UnsupportedSchemaError as exc:
                failures.append(exc)
        raise UnsupportedSchemaError(pointer, f"no branch of `{keyword}` can be generated ({failures[0]})")

    def _branch_weight(self, branch: Any, pointer: str) -> int:
        try:
            branch = self._deref(branch, pointer)
        except UnsupportedSchemaError:
            return len(_NULL_FIRST)
        if (
            isinstance(branch, Mapping)
            and isinstance(branch.get("type"), str)
            and branch["type"] in _NULL_FIRST
        ):
            return _NULL_FIRST.index(branch["type"])
        return len(_NULL_FIRST)

    def _enum(self, schema: Mapping[str, Any], pointer: str) -> Any:
        options = schema["enum"]
        if not isinstance(options, list) or not options:
            raise UnsupportedSchemaError(pointer, "`enum` must be a non-empty list")
        declared = schema.get("type")
        if declared is not None:
            kinds = {declared} if isinstance(declared, str) else set(declared)
            options = [
                option
                for option in options
                if _json_type(option) in kinds or (_json_type(option) == "integer" and "number" in kinds)
            ]
            if not options:
                raise UnsupportedSchemaError(pointer, "no `enum` value has the declared `type`")
        return _copy(options[self.rng.randrange(len(options))])

    # -- scalars --------------------------------------------------------------------------------------------

    def _bounds(
        self, schema: Mapping[str, Any], pointer: str
    ) -> tuple[Fraction | None, bool, Fraction | None, bool]:
        """(low, low is exclusive, high, high is exclusive), for draft 4 (boolean) and 6+ (numeric) forms."""
        low = _number_or_none(schema.get("minimum"), pointer, "minimum")
        high = _number_or_none(schema.get("maximum"), pointer, "maximum")
        low_open = high_open = False
        exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if isinstance(exclusive_low, bool):
            low_open = exclusive_low and low is not None
        elif exclusive_low is not None:
            bound = _number_or_none(exclusive_low, pointer, "exclusiveMinimum")
            if low is None or (bound is not None and bound >= low):
                low, low_open = bound, True
        if isinstance(exclusive_high, bool):
            high_open = exclusive_high and high is not None
        elif exclusive_high is not None:
            bound = _number_or_none(exclusive_high, pointer, "exclusiveMaximum")
            if high is None or (bound is not None and bound <= high):
                high, high_open = bound, True
        return low, low_open, high, high_open

    def _integer(self, schema: Mapping[str, Any], pointer: str) -> int:
        low, low_open, high, high_open = self._bounds(schema, pointer)
        first = None if low is None else Fraction(floor(low) + 1 if low_open else ceil(low))
        last = None if high is None else Fraction(ceil(high) - 1 if high_open else floor(high))
        start, end = _span(first, last)
        step = _multiple_of(schema, pointer)
        if step is None:
            if start > end:
                raise UnsupportedSchemaError(pointer, "no integer lies within its bounds")
            return self.rng.randint(int(start), int(end))
        # The integers that are multiples of p/q (in lowest terms) are exactly the multiples of p.
        return int(self._multiple_between(Fraction(step.numerator), start, end, pointer, "integer"))

    def _number(self, schema: Mapping[str, Any], pointer: str) -> int | float:
        low, low_open, high, high_open = self._bounds(schema, pointer)
        step = _multiple_of(schema, pointer)
        if step is not None:
            first = None if low is None else low + (step if low_open and low % step == 0 else 0)
            last = None if high is None else high - (step if high_open and high % step == 0 else 0)
            start, end = _span(first, last)
            value = self._multiple_between(step, start, end, pointer, "number")
            return int(value) if value.denominator == 1 else float(value)
        start, end = _span(low, high)
        # Hundredths: a number a person would write, strictly inside open bounds.
        first_hundredth = floor(start * 100) + 1 if low_open else ceil(start * 100)
        last_hundredth = ceil(end * 100) - 1 if high_open else floor(end * 100)
        if first_hundredth <= last_hundredth:
            hundredths = self.rng.randint(first_hundredth, last_hundredth)
            return hundredths // 100 if hundredths % 100 == 0 else hundredths / 100
        if start < end or (start == end and not (low_open or high_open)):
            return float((start + end) / 2)
        raise UnsupportedSchemaError(pointer, "no number lies within its bounds")

    def _multiple_between(
        self, step: Fraction, first: Fraction, last: Fraction, pointer: str, kind: str
    ) -> Fraction:
        low_k, high_k = ceil(first / step), floor(last / step)
        if low_k > high_k:
            raise UnsupportedSchemaError(pointer, f"no {kind} multiple of {step} lies within its bounds")
        return step * self.rng.randint(low_k, high_k)

    def _string(self, schema: Mapping[str, Any], pointer: str) -> str:
        if "pattern" in schema:
            raise UnsupportedSchemaError(pointer, "`pattern` is not supported")
        shortest = _count(schema, "minLength", 0, pointer)
        longest = _count(schema, "maxLength", max(shortest, 40), pointer)
        if shortest > longest:
            raise UnsupportedSchemaError(pointer, "minLength is greater than maxLength")
        if shortest > MAX_STRING_LENGTH:
            raise UnsupportedSchemaError(pointer, f"minLength above {MAX_STRING_LENGTH} is not supported")
        formatted = self._formatted(schema.get("format"))
        if formatted is not None:
            if shortest <= len(formatted) <= longest:
                return formatted
            raise UnsupportedSchemaError(pointer, f"a {schema['format']} cannot fit its length bounds")
        return self._words(shortest, longest)

    def _words(self, shortest: int, longest: int) -> str:
        goal = self.rng.randint(max(shortest, min(longest, 3)), max(shortest, min(longest, 24)))
        pieces: list[str] = []
        length = 0
        while length < goal:
            word = self.words[self.rng.randrange(len(self.words))]
            pieces.append(word)
            length += len(word) + (1 if len(pieces) > 1 else 0)
        return " ".join(pieces)[:longest]

    def _formatted(self, kind: Any) -> str | None:
        rng = self.rng
        if kind == "date-time":
            return f"{self._date()}T{self._time()}Z"
        if kind == "date":
            return self._date()
        if kind == "time":
            return f"{self._time()}Z"
        if kind == "email":
            return f"{self._slug()}@example.com"
        if kind in ("uri", "url", "iri"):
            return f"https://example.com/{self._slug()}"
        if kind == "hostname":
            return f"{self._slug()}.example.com"
        if kind == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if kind == "ipv4":
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        if kind == "ipv6":
            return ":".join(f"{rng.randrange(0x10000):x}" for _ in range(8))
        if kind == "duration":
            return f"PT{rng.randint(1, 59)}M"
        return None

    def _date(self) -> str:
        return (
            f"{self.rng.randint(2000, 2030):04d}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        )

    def _time(self) -> str:
        return f"{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:{self.rng.randint(0, 59):02d}"

    def _slug(self) -> str:
        word = self.words[self.rng.randrange(len(self.words))]
        return "".join(ch for ch in word.lower() if ch.isascii() and ch.isalnum()) or "user"

    # -- containers -----------------------------------------------------------------------------------------

    def _array(self, schema: Mapping[str, Any], pointer: str, *, refs: int, nesting: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items: Any = schema.get("items", True)
        if isinstance(items, list):  # draft 4-2019: a list under `items` is the tuple form
            prefix, items = items, schema.get("additionalItems", True)
        prefix = list(prefix or [])
        minimal = refs >= REF_DEPTH_SOFT_CAP
        shortest = _count(schema, "minItems", 0, pointer)
        longest = _count(schema, "maxItems", MAX_ARRAY_ITEMS, pointer)
        if shortest > longest:
            raise UnsupportedSchemaError(pointer, "minItems is greater than maxItems")
        if shortest > MAX_ARRAY_ITEMS:
            raise UnsupportedSchemaError(pointer, f"minItems above {MAX_ARRAY_ITEMS} is not supported")
        if items is False:
            longest = min(longest, len(prefix))
            if shortest > longest:
                raise UnsupportedSchemaError(pointer, "minItems needs more items than the tuple allows")
        if minimal:
            size = max(shortest, min(len(prefix), longest))
        else:
            size = self.rng.randint(
                max(shortest, min(1, longest)), max(shortest, min(longest, DEFAULT_MAX_ITEMS))
            )
            size = max(size, min(len(prefix), longest))
        contains = schema.get("contains")
        if contains is not None:
            size = max(size, len(prefix) + 1)
            if size > longest:
                raise UnsupportedSchemaError(pointer, "`contains` needs one more item than maxItems allows")
        unique = schema.get("uniqueItems") is True
        seen: set[bytes] = set()
        result: list[Any] = []
        for position in range(size):
            if position < len(prefix):
                item_schema, where = prefix[position], f"{pointer}/prefixItems/{position}"
            elif position == len(prefix) and contains is not None:
                item_schema = contains if items is True else {"allOf": [items, contains]}
                where = f"{pointer}/contains"
            else:
                item_schema, where = items, f"{pointer}/items"
            item = self._item(item_schema, where, seen if unique else None, refs=refs, nesting=nesting)
            if item is _NO_ITEM:
                if position < shortest:
                    raise UnsupportedSchemaError(where, f"cannot make {shortest} distinct items")
                break
            result.append(item)
        return result

    def _item(self, schema: Any, pointer: str, seen: set[bytes] | None, *, refs: int, nesting: int) -> Any:
        for _ in range(UNIQUE_ATTEMPTS if seen is not None else 1):
            item = self.value(schema, pointer, refs=refs, nesting=nesting + 1)
            if seen is None:
                return item
            key = msgspec.json.encode(item, order="sorted")
            if key not in seen:
                seen.add(key)
                return item
        return _NO_ITEM

    def _object(self, schema: Mapping[str, Any], pointer: str, *, refs: int, nesting: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise UnsupportedSchemaError(pointer, "`properties` must be an object")
        required = list(dict.fromkeys(schema.get("required") or ()))
        extra = schema.get("additionalProperties", True)
        fewest = _count(schema, "minProperties", 0, pointer)
        most = _count(schema, "maxProperties", MAX_ARRAY_ITEMS, pointer)
        if len(required) > most or fewest > most:
            raise UnsupportedSchemaError(pointer, "needs more properties than maxProperties allows")
        minimal = refs >= REF_DEPTH_SOFT_CAP
        chosen = list(required)
        optional = [name for name in properties if name not in required]
        for name in optional:
            if len(chosen) >= most:
                break
            if not minimal and self.rng.random() < 0.5:
                chosen.append(name)
        for name in optional:  # minProperties: the optional ones first, in order
            if len(chosen) >= fewest:
                break
            if name not in chosen:
                chosen.append(name)
        result: dict[str, Any] = {}
        for name in [name for name in properties if name in chosen] + [
            n for n in chosen if n not in properties
        ]:
            if name in properties:
                sub, where = properties[name], f"{pointer}/properties/{_escape(name)}"
            elif extra is False:
                raise UnsupportedSchemaError(
                    pointer, f"{name!r} is required but additionalProperties is false"
                )
            else:
                sub, where = extra, f"{pointer}/additionalProperties"
            result[name] = self.value(sub, where, refs=refs, nesting=nesting + 1)
        for name in self._extra_names(set(result)):
            if len(result) >= fewest:
                break
            if extra is False:
                raise UnsupportedSchemaError(pointer, "minProperties needs more properties than are allowed")
            result[name] = self.value(
                extra, f"{pointer}/additionalProperties", refs=refs, nesting=nesting + 1
            )
        return result

    def _extra_names(self, taken: set[str]) -> Iterator[str]:
        for number in range(MAX_ARRAY_ITEMS):
            name = f"{self._slug()}_{number}"
            if name not in taken:
                yield name


class _NoItem:
    """Marks that no further distinct item could be made (`None` is a valid item)."""


_NO_ITEM: Any = _NoItem()


def _merge(into: dict[str, Any], part: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    """Two schemas as one that both accept: the keywords `allOf` combines in practice."""
    merged = dict(into)
    for key, value in part.items():
        if key in _ANNOTATIONS or key not in merged:
            merged.setdefault(key, value)
            continue
        current = merged[key]
        if key == "properties":
            properties = dict(current)
            for name, sub in value.items():
                properties[name] = {"allOf": [properties[name], sub]} if name in properties else sub
            merged[key] = properties
        elif key == "required":
            merged[key] = list(dict.fromkeys([*current, *value]))
        elif key == "type":
            kinds = _common_types(_as_list(current), _as_list(value))
            if not kinds:
                raise UnsupportedSchemaError(pointer, "`allOf` parts declare types no value has")
            merged[key] = kinds[0] if len(kinds) == 1 else kinds
        elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
            merged[key] = (
                value if isinstance(value, bool) or isinstance(current, bool) else max(current, value)
            )
        elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
            merged[key] = (
                value if isinstance(value, bool) or isinstance(current, bool) else min(current, value)
            )
        elif key == "enum":
            options = [option for option in current if option in value]
            if not options:
                raise UnsupportedSchemaError(pointer, "`allOf` parts share no `enum` value")
            merged[key] = options
        elif key == "additionalProperties":
            merged[key] = False if False in (current, value) else {"allOf": [current, value]}
        elif key in ("items", "contains"):
            merged[key] = {"allOf": [current, value]}
        elif current != value:
            if key in ("anyOf", "oneOf"):
                # (A1 or A2) and (B1 or B2): each pairing, as one list of branches.
                merged[key] = [{"allOf": [a, b]} for a in current for b in value]
            elif key == "const":
                raise UnsupportedSchemaError(pointer, "`allOf` parts require different constants")
            else:
                raise UnsupportedSchemaError(pointer, f"`allOf` parts disagree on `{key}`")
    return merged


def _common_types(first: list[str], second: list[str]) -> list[str]:
    """The types both lists accept; an integer is a number."""

    def accepts(kinds: list[str], kind: str) -> bool:
        return kind in kinds or (kind == "integer" and "number" in kinds)

    return [
        kind for kind in dict.fromkeys([*first, *second]) if accepts(first, kind) and accepts(second, kind)
    ]


def _as_list(kind: Any) -> list[str]:
    return [kind] if isinstance(kind, str) else list(kind)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _copy(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _number_or_none(value: Any, pointer: str, keyword: str) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnsupportedSchemaError(pointer, f"`{keyword}` must be a number")
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _multiple_of(schema: Mapping[str, Any], pointer: str) -> Fraction | None:
    step = _number_or_none(schema.get("multipleOf"), pointer, "multipleOf")
    if step is not None and step <= 0:
        raise UnsupportedSchemaError(pointer, "`multipleOf` must be greater than 0")
    return step


def _count(schema: Mapping[str, Any], keyword: str, default: int, pointer: str) -> int:
    value = schema.get(keyword, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnsupportedSchemaError(pointer, f"`{keyword}` must be a non-negative integer")
    return value


def _span(first: Fraction | None, last: Fraction | None) -> tuple[Fraction, Fraction]:
    """Bounds with a missing side filled in: a range a person would pick from."""
    if first is None and last is None:
        return Fraction(0), Fraction(DEFAULT_NUMBER_SPAN)
    if first is None:
        assert last is not None
        return last - DEFAULT_NUMBER_SPAN, last
    if last is None:
        return first, first + DEFAULT_NUMBER_SPAN
    return first, last
