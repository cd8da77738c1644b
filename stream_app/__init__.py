"""Wedding reporting engine: Kafka events in, live metrics and delivered reports out.

The package follows the data's path: ``schemas`` (the wire contracts) → ``agents`` (Faust
stream processors) → ``tables`` (RocksDB-backed state and the pure folds that update it) →
``reports`` (report types, renderers, artifact store) → ``web`` (HTTP views). ``db`` holds the
PostgreSQL history, ``replay`` turns real data sets into events, ``devservices`` starts the real
Kafka broker and PostgreSQL cluster used by the demo, the tests and CI.
"""

__version__ = "0.1.0"
