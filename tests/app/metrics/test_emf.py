"""EMF records against the specification's own JSON schema (vendored from the AWS documentation)."""

from __future__ import annotations

import copy
import json
import logging

import jsonschema
import pytest

from app.logs import configure_logging
from app.metrics import emf
from app.metrics.recorder import StreamMetrics
from tests.app.metrics.support import EMF_SCHEMA, assert_valid_emf, emf_metrics
from tests.app.metrics.support import ERROR_END as END


def test_the_vendored_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(EMF_SCHEMA)
    assert "docs.aws.amazon.com" in EMF_SCHEMA["$comment"]


def test_a_stream_end_record_validates_with_its_timestamp_and_namespace() -> None:
    record = emf.stream_end_members(END, 1_764_000_000_123)

    assert_valid_emf(record)
    assert record["_aws"]["Timestamp"] == 1_764_000_000_123
    assert {d["Namespace"] for d in record["_aws"]["CloudWatchMetrics"]} == {"tokenrelay"}
    assert set(emf_metrics(record)) == {
        "StreamsEnded",
        "StreamDuration",
        "CompletionTokens",
        "TimeToFirstToken",
        "UpstreamErrors",
    }


def test_a_resume_record_validates() -> None:
    record = emf.resume_members("ui-message-stream", 1_764_000_000_000)

    assert_valid_emf(record)
    assert emf_metrics(record) == {"StreamResumes": (1, "Count", [["Dialect"], []])}
    assert record["Dialect"] == "ui-message-stream"


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda r: r["_aws"].pop("Timestamp"), id="no timestamp"),
        pytest.param(
            lambda r: r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="ms"), id="bad unit"
        ),
        pytest.param(
            lambda r: r["_aws"]["CloudWatchMetrics"][0].update(Dimensions=[]), id="no dimension set"
        ),
        pytest.param(lambda r: r["_aws"]["CloudWatchMetrics"][0].pop("Namespace"), id="no namespace"),
    ],
)
def test_the_schema_refuses_a_broken_record(break_it: object) -> None:
    record = copy.deepcopy(emf.stream_end_members(END, 1))
    break_it(record)  # type: ignore[operator]

    with pytest.raises(jsonschema.ValidationError):
        assert_valid_emf(record)


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda r: r.pop("Provider"), id="a dimension without its member"),
        pytest.param(lambda r: r.update(StreamsEnded="1"), id="a metric that is no number"),
    ],
)
def test_the_rules_beyond_the_schema_are_checked_too(break_it: object) -> None:
    record = copy.deepcopy(emf.stream_end_members(END, 1))
    break_it(record)  # type: ignore[operator]

    with pytest.raises(AssertionError):
        assert_valid_emf(record)


@pytest.mark.parametrize(("emf", "written"), [(True, True), (False, False)])
def test_the_emf_line_is_written_even_at_log_level_warning(
    capsys: pytest.CaptureFixture[str], emf: bool, written: bool
) -> None:
    # CloudWatch reads the metrics, and the alarms on them, from this line: LOG_LEVEL must not silence it.
    # `configure_logging` rewires process-wide loggers: each is put back as it was.
    loggers = [logging.getLogger(name) for name in ("tokenrelay", "uvicorn", "uvicorn.error", "providers")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    try:
        configure_logging("WARNING")
        StreamMetrics(emf=emf).stream_ended(END)
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    ends = [line for line in lines if line["event"] == "stream_end"]
    assert len(ends) == (1 if written else 0)
    if written:
        assert_valid_emf(ends[0])
