"""tokenrelay: stream AI model answers token by token over SSE, locally and on AWS Lambda."""
