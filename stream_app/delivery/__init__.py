"""Delivery of finished reports: email, webhook, SFTP and API links, with retries and a log.

:mod:`~stream_app.delivery.targets` defines where a report goes and the retry policy,
:mod:`~stream_app.delivery.base` the order, the method interface and the error taxonomy, one
module per method implements it, :mod:`~stream_app.delivery.dispatch` makes one attempt and
logs it (:mod:`~stream_app.delivery.log`), :mod:`~stream_app.delivery.queue` and
:mod:`~stream_app.delivery.worker` queue and attempt deliveries when due. Who orders a
delivery is a :class:`~stream_app.delivery.worker.DeliverySource`: a report request's own
``delivery`` (:mod:`~stream_app.delivery.adhoc`) or a schedule run
(:mod:`stream_app.schedules.deliveries`). Nothing here imports ``schedules``.
"""
