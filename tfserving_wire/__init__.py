"""What the exporter and the TF Serving simulator both speak: TF Serving's wire formats.

- ``protos``: TF Serving's and TensorFlow's generated protobuf modules, without TF's runtime;
- ``tensor_proto``: ``TensorProto`` <-> numpy, as TensorFlow converts them;

Neither side's internals belong here; only what is fixed by TF Serving's own API.
"""
