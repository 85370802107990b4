"""Fleet mode: ``/probe?target=...`` collects one TF Serving server's metrics on demand (the
multi-target exporter pattern), with canaries per target in the background."""
