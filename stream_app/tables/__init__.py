"""Table state: value types, keys and the pure folds that update them.

Nothing here talks to Kafka: the agents own the I/O and call these folds, so the arithmetic is
tested without a broker and the same code runs in every worker.
"""
