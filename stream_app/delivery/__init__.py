"""Delivery of scheduled reports: email, webhook, SFTP and API links, with retries and a log.

:mod:`~stream_app.delivery.base` defines the method interface and error taxonomy, one module
per method implements it, :mod:`~stream_app.delivery.log` writes the delivery log and
:mod:`~stream_app.delivery.dispatch` runs a method with the schedule's retry policy.
"""
