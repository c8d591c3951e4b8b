"""What the metrics tests share: the vendored EMF schema and readers of both sinks' output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from app.logs import JsonFormatter
from app.metrics.record import StreamEnd, StreamLabels

# The JSON schema of the EMF specification, from the AWS documentation (its URL is in the file's $comment).
# It names no `$schema`; its `$id: "#/properties/..."` fragments are the draft-07 idiom (later drafts
# refuse them), so it is read as draft 7.
EMF_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "emf_schema.json").read_text())
EMF_VALIDATOR = jsonschema.Draft7Validator(EMF_SCHEMA)

# A stream that ended on an upstream failure: its EMF record defines every metric a stream end can carry.
ERROR_END = StreamEnd(
    stream_id="s-1",
    labels=StreamLabels(dialect="stream", provider="openai", model="gpt-4o-mini"),
    outcome="error",
    ttft_ms=12.5,
    duration_ms=830.25,
    completion_tokens=7,
    prompt_tokens=3,
    upstream_error="upstream_timeout",
)


def formatted_lines(records: list[logging.LogRecord], event: str) -> list[dict[str, Any]]:
    """The lines as they are written to stderr (so as CloudWatch Logs ingests them), parsed back."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in records if r.getMessage() == event]


def assert_valid_emf(record: dict[str, Any]) -> None:
    """Valid by the schema, and by the rules of the specification that the schema does not express:
    every dimension a string member of the root, every metric a number (or numbers) there."""
    EMF_VALIDATOR.validate(record)
    for directive in record["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(record.get(dimension), str), (
                    f"dimension {dimension!r} is not a string member"
                )
        for metric in directive["Metrics"]:
            value = record.get(metric["Name"])
            assert isinstance(value, int | float), f"metric {metric['Name']!r} is not numeric: {value!r}"
            assert not isinstance(value, bool), f"metric {metric['Name']!r} is a boolean"
        assert len(directive["Metrics"]) <= 100


def emf_metrics(record: dict[str, Any]) -> dict[str, tuple[float, str, list[list[str]]]]:
    """Each metric the record defines: its value, unit and dimension sets."""
    out: dict[str, tuple[float, str, list[list[str]]]] = {}
    for directive in record["_aws"]["CloudWatchMetrics"]:
        assert directive["Namespace"] == "tokenrelay"
        for metric in directive["Metrics"]:
            out[metric["Name"]] = (record[metric["Name"]], metric["Unit"], directive["Dimensions"])
    return out


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, parsed with prometheus_client's own parser."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def sample(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value, 0 when the series does not exist (yet)."""
    return parsed.get((name, frozenset(labels.items())), 0.0)
