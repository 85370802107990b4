"""``--ssl_config_file``: TF Serving's text-format ``SSLConfig`` for its gRPC port.

Fields (``tensorflow_serving/config/ssl_config.proto``): ``server_key`` and ``server_cert``
(PEM text, not paths), ``custom_ca`` (PEM of the CA that signs client certificates) and
``client_verify`` (require a client certificate signed by ``custom_ca``). The proto module is
not in the pip package, so the small message is parsed here.
"""

from __future__ import annotations

import grpc

from tfserving_simulator.errors import ServingError
from tfserving_simulator.monitoring_config import parse_flat_message

_FIELDS = {"server_key": "string", "server_cert": "string", "custom_ca": "string",
           "client_verify": "bool"}


def server_credentials(path: str) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port``; a bad file is a startup error, as in TF Serving."""
    try:
        with open(path, encoding="utf-8") as handle:
            values = parse_flat_message(handle.read(), _FIELDS)
    except OSError as err:
        raise ServingError("NOT_FOUND", f"{path}; {err.strerror or err}") from None
    except ValueError as err:
        raise ServingError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}': {err}") from None
    key, cert = values.get("server_key", ""), values.get("server_cert", "")
    if not key or not cert:
        raise ServingError("INVALID_ARGUMENT", f"{path}: server_key and server_cert are required")
    custom_ca = str(values.get("custom_ca", "")).encode() or None
    verify = bool(values.get("client_verify", False))
    if verify and custom_ca is None:
        raise ServingError("INVALID_ARGUMENT", f"{path}: client_verify needs custom_ca")
    return grpc.ssl_server_credentials([(str(key).encode(), str(cert).encode())],
                                       root_certificates=custom_ca,
                                       require_client_auth=verify)
