"""Scheduled reports: schedule values, cron fire times, storage and the scheduler loop.

Modules: :mod:`~stream_app.schedules.model` (the :class:`Schedule` value and its validation;
its delivery target is :mod:`stream_app.delivery.targets`'),
:mod:`~stream_app.schedules.cron` (fire times and the daylight-saving policy),
:mod:`~stream_app.schedules.store` (PostgreSQL CRUD and exactly-once claiming),
:mod:`~stream_app.schedules.runner` (the scheduler tick and loop) and
:mod:`~stream_app.schedules.deliveries` (runs as a delivery source: what a run delivers and
the run's status after each outcome).
"""
