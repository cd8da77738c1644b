"""Scheduled reports: schedule values, cron fire times, storage and the scheduler loop.

Modules: :mod:`~stream_app.schedules.model` (the :class:`Schedule` value and its validation),
:mod:`~stream_app.schedules.cron` (fire times and the daylight-saving policy),
:mod:`~stream_app.schedules.store` (PostgreSQL CRUD and exactly-once claiming) and
:mod:`~stream_app.schedules.runner` (the scheduler tick and loop).
"""
