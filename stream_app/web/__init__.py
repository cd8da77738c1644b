"""HTTP views served by each worker (Faust web on aiohttp): metrics, reports, health."""
