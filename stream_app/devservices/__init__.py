"""Real local services for development, the tests and CI: a KRaft Kafka broker and PostgreSQL.

No mocks and no containers: Kafka runs from the official jars on Maven Central with the
machine's Java, PostgreSQL from the installed server binaries. ``manager`` starts and stops
both; ``cli`` is the ``wedding-engine services up|down|status`` command.
"""
