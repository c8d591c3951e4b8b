"""Tests of the model providers: the OpenAI provider over a fake transport, and the provider contract."""
