-- The PostgreSQL roles of the engine (README, "Security model"): ROLES_SQL of
-- stream_app/db/roles.py, copied here for deploy/postgres/10-wedding-roles.sh and for operators
-- of a managed PostgreSQL (run it once as an administrator, then set the passwords).
-- tests/deploy/test_compose.py checks that this copy equals ROLES_SQL.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wedding_owner') THEN
        CREATE ROLE wedding_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wedding_tenant') THEN
        CREATE ROLE wedding_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wedding_app') THEN
        CREATE ROLE wedding_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wedding_system') THEN
        CREATE ROLE wedding_system LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END $$;
GRANT wedding_tenant TO wedding_app;
-- tenant transactions bound their statements' temporary files (PostgreSQL >= 15)
GRANT SET ON PARAMETER temp_file_limit TO wedding_app;
GRANT CREATE, USAGE ON SCHEMA public TO wedding_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- hypothetical indexes for the query optimiser (stream_app/aggregation/optimizer.py), when
-- the server has Debian's postgresql-<major>-hypopg; without it index candidates are skipped
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg') THEN
        CREATE SCHEMA IF NOT EXISTS hypopg;
        CREATE EXTENSION IF NOT EXISTS hypopg SCHEMA hypopg;
        GRANT USAGE ON SCHEMA hypopg TO wedding_tenant;
    END IF;
END $$;
