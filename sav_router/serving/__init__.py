"""Serving: the SageMaker-compatible HTTP server (real-time endpoint and Batch Transform).

protocol  request parsing/validation and answer encoding (no framework)
batcher   dynamic micro-batching of concurrent requests
app       the FastAPI application (/ping, /invocations, /execution-parameters)
runner    model discovery and the uvicorn process with graceful shutdown
commands  the `serve` and `export-onnx` subcommands
"""
