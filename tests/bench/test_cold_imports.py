"""The mock path's cold start stays lean: building the app imports neither openai nor pydantic."""

from __future__ import annotations

from tests.support.imports import modules_after_create_app


def test_the_mock_path_imports_neither_openai_nor_pydantic() -> None:
    loaded = modules_after_create_app(PROVIDER="mock")

    assert "litestar" in loaded
    assert "openai" not in loaded
    assert "pydantic" not in loaded
    assert "botocore" not in loaded


def test_the_bedrock_path_imports_botocore_but_not_openai_nor_boto3() -> None:
    loaded = modules_after_create_app(
        PROVIDER="bedrock", BEDROCK_MODELS="amazon.nova-lite-v1:0", BEDROCK_REGION="us-east-1"
    )

    assert "botocore" in loaded
    assert "openai" not in loaded
    assert "boto3" not in loaded
