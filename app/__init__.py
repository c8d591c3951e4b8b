"""tokenrelay: stream AI model answers token by token over SSE, locally and on AWS Lambda.

`stream/` is the core every host shares; `http/` serves it with Litestar (uvicorn, or Lambda behind
Mangum); `lambda_/` runs the same app on AWS Lambda, buffered or streamed. See the README's Architecture.
"""

VERSION = "0.1.0"
