"""tfserving-exporter: a Prometheus exporter sidecar for TensorFlow Serving."""

__version__ = "0.1.0"
