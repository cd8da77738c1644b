"""Reports: report types (what is computed), renderers (file formats), the artifact store and
the report agent that turns ``report-requests`` into stored files and status messages."""
