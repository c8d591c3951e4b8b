"""Model providers: a small protocol, a deterministic mock and the OpenAI SDK."""
