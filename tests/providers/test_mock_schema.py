"""The mock's JSON Schema instances: valid (checked by `jsonschema`, formats included), deterministic, and a
clear error naming the place for what cannot be generated."""

from __future__ import annotations

import enum
import random
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from providers.mock_schema import UnsupportedSchemaError, instance_of

WORDS = ("stream", "token", "socket", "answer", "buffer")
SEEDS = range(25)


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str | None = None


class Reading(BaseModel):
    at: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    degrees: Annotated[float, Field(ge=-90, le=60)]
    humidity: Annotated[int, Field(ge=0, le=100, multiple_of=5)]


class Forecast(BaseModel):
    place: Place
    unit: Unit
    mood: Literal["sunny", "grey", "stormy"]
    summary: Annotated[str, Field(min_length=10, max_length=80)]
    readings: Annotated[list[Reading], Field(min_length=1, max_length=4)]
    tags: list[str] = []
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.5


class Tree(BaseModel):
    label: str
    children: list[Tree] = []
    parent: Tree | None = None


class Cat(BaseModel):
    pet_type: Literal["cat"]
    meows: int


class Dog(BaseModel):
    pet_type: Literal["dog"]
    barks: float


class Owner(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="pet_type")]


OPENAI_STRICT = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            },
        },
        "final_answer": {"type": ["string", "null"]},
    },
    "required": ["steps", "final_answer"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
    },
    "required": ["location"],
}

CASES: dict[str, dict[str, Any]] = {
    "pydantic forecast": Forecast.model_json_schema(),
    "pydantic recursive tree": Tree.model_json_schema(),
    "pydantic discriminated union": Owner.model_json_schema(),
    "openai strict": OPENAI_STRICT,
    "weather tool": WEATHER_TOOL,
    "anyOf scalars": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "string", "maxLength": 2}]},
    "oneOf with siblings": {
        "type": "object",
        "required": ["id"],
        "oneOf": [
            {"properties": {"id": {"type": "integer"}}},
            {"properties": {"id": {"type": "string", "format": "uuid"}}},
        ],
    },
    "allOf objects": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
        ],
        "additionalProperties": False,
        "properties": {"a": {}, "b": {}},
    },
    "prefixItems": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": False},
    "exclusive bounds (numeric)": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.02},
    "exclusive bounds (draft 4)": {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "integer",
        "minimum": 1,
        "exclusiveMinimum": True,
        "maximum": 3,
        "exclusiveMaximum": True,
    },
    "multipleOf number": {"type": "number", "minimum": 1, "maximum": 2, "multipleOf": 0.25},
    "multipleOf fractional integer": {"type": "integer", "minimum": 0, "maximum": 20, "multipleOf": 1.5},
    "minItems 5": {"type": "array", "items": {"type": "integer"}, "minItems": 5},
    "uniqueItems enum": {
        "type": "array",
        "items": {"enum": ["a", "b", "c"]},
        "minItems": 3,
        "uniqueItems": True,
    },
    "minProperties": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
    "formats": {
        "type": "object",
        "required": ["when", "day", "mail", "site", "id", "ip"],
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "mail": {"type": "string", "format": "email"},
            "site": {"type": "string", "format": "uri"},
            "id": {"type": "string", "format": "uuid"},
            "ip": {"type": "string", "format": "ipv4"},
        },
    },
    "contains": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 7}},
    "empty schema": {},
    "definitions (draft 7)": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"n": {"type": "null"}},
        "$ref": "#/definitions/n",
    },
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_instance_validates_against_its_schema(name: str) -> None:
    schema = CASES[name]
    draft = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = draft(schema, format_checker=draft.FORMAT_CHECKER)
    for seed in SEEDS:
        value = instance_of(schema, random.Random(seed), words=WORDS)
        errors = [error.message for error in validator.iter_errors(value)]
        assert not errors, (seed, value, errors)


def test_pydantic_models_parse_what_is_generated() -> None:
    for seed in SEEDS:
        Forecast.model_validate(instance_of(Forecast.model_json_schema(), random.Random(seed), words=WORDS))
        Tree.model_validate(instance_of(Tree.model_json_schema(), random.Random(seed), words=WORDS))
        Owner.model_validate(instance_of(Owner.model_json_schema(), random.Random(seed), words=WORDS))


def test_the_same_seed_gives_the_same_value_and_seeds_differ() -> None:
    schema = Forecast.model_json_schema()
    first = instance_of(schema, random.Random(7), words=WORDS)
    assert instance_of(schema, random.Random(7), words=WORDS) == first
    assert len({repr(instance_of(schema, random.Random(seed), words=WORDS)) for seed in SEEDS}) > 1


def test_both_branches_of_a_union_and_optional_properties_occur() -> None:
    values = [instance_of(Owner.model_json_schema(), random.Random(seed), words=WORDS) for seed in SEEDS]
    assert {value["pet"]["pet_type"] for value in values} == {"cat", "dog"}
    present = [("days" in instance_of(WEATHER_TOOL, random.Random(seed), words=WORDS)) for seed in SEEDS]
    assert True in present
    assert False in present


def test_a_recursive_schema_ends() -> None:
    always_a_child = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                "required": ["next"],
            }
        },
        "$ref": "#/$defs/node",
    }
    for seed in SEEDS:
        value = instance_of(always_a_child, random.Random(seed), words=WORDS)
        depth = 0
        while value is not None:
            value, depth = value["next"], depth + 1
        assert depth <= 5


@pytest.mark.parametrize(
    ("schema", "pointer", "reason"),
    [
        (
            {
                "type": "object",
                "required": ["code"],
                "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}},
            },
            "#/properties/code",
            "`pattern` is not supported",
        ),
        ({"not": {"type": "string"}}, "#", "`not` is not supported"),
        (False, "#", "accepts no value"),
        ({"type": "integer", "minimum": 5, "maximum": 4}, "#", "no integer lies within its bounds"),
        ({"type": "integer", "minimum": 1, "maximum": 2, "multipleOf": 3}, "#", "no integer multiple of 3"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "#", "minLength is greater than maxLength"),
        (
            {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 3, "uniqueItems": True},
            "#/items",
            "cannot make 3 distinct items",
        ),
        ({"$ref": "https://example.com/schema.json"}, "#", "only local `$ref`s"),
        ({"$ref": "#/$defs/missing"}, "#", "points at nothing"),
        (
            {
                "$defs": {
                    "loop": {
                        "type": "object",
                        "properties": {"x": {"$ref": "#/$defs/loop"}},
                        "required": ["x"],
                    }
                },
                "$ref": "#/$defs/loop",
            },
            "#",
            "nests deeper than",
        ),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "#/allOf/1", "declare types no value has"),
    ],
)
def test_what_cannot_be_generated_is_refused_by_name(schema: Any, pointer: str, reason: str) -> None:
    with pytest.raises(UnsupportedSchemaError) as raised:
        instance_of(schema, random.Random(0), words=WORDS)
    assert raised.value.pointer.startswith(pointer)
    assert reason in raised.value.reason
