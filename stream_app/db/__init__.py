"""PostgreSQL history: schema migrations, tenant-scoped access and bulk loading (asyncpg)."""
