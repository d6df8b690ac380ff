"""Code shared by all three containers: settings, job store, message format, S3 keys, table schema, metrics.

Keep this package free of heavy imports (no numpy, no onnxruntime): the API image installs it too.
"""
