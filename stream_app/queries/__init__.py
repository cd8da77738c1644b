"""Reading table rows wherever they live: which partition holds a key
(:mod:`~stream_app.queries.partitions`), which worker owns it and reading from there
(:mod:`~stream_app.queries.routing`), and scatter-gather over every worker's partitions
(:mod:`~stream_app.queries.scatter`). Below the HTTP layer: nothing here imports
:mod:`stream_app.web`; what cannot be answered raises
:class:`~stream_app.queries.errors.QueryUnavailableError`.
"""
