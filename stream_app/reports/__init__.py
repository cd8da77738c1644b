"""Reports: report types (``types/``: what is computed), renderers (``render/``: file formats),
the one accept path of a request, the lanes that generate reports into the artifact store and
publish their status changes, the report cache. The faust agents that run them are in
:mod:`stream_app.agents.reports`."""
