"""The HTTP host: Litestar route handlers, request decoding, the event-stream response, auth, the
WebSocket and the browser page. Each handler decodes a request, opens a session and hands it to one
dialect; everything a client sees is written by the same code under uvicorn and on Lambda."""
