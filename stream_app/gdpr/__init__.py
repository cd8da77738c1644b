"""GDPR actions: data-subject requests (export, erasure) and retention rules.

Part of the history side of the pipeline: these modules read and write PostgreSQL and the
artifact store; the live tables are reached through Kafka (:mod:`stream_app.gdpr.live`). The
data map (what personal data lives where) is in the README, section "GDPR data map".
"""
