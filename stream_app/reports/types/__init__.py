"""Report types: one module per type, each a :class:`~stream_app.reports.types.base.ReportType`
built on :mod:`stream_app.reports.types.base`; they are listed in :mod:`stream_app.reports.registry`
(this package imports none of them)."""
