"""The AWS Lambda host: the same app, buffered through Mangum (`buffered`, `handler.handler`) or streamed
through our own Runtime API loop (`runtime`, started by the exec wrapper `bootstrap`). It adds only what
Lambda needs: the invocation deadline, error trailers, the key from Secrets Manager or SSM.

Nothing is imported here: `runtime` must start on the standard library alone, to report import errors."""
