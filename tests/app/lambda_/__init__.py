"""Tests of the Lambda side: the streaming runtime, the buffered handler, cancels, secrets, templates."""
