-- API tokens: what was issued (wedding-engine token) and what was revoked.
-- A token is a signed JWT (stream_app.web.auth); this table records its id (jti) so it can
-- be listed and revoked. Revocations name one jti or every token of the organisation issued
-- before a time; every worker reads them (cached a few seconds, stream_app.web.revocation).

CREATE TABLE tokens (
    jti             text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    subject         text NOT NULL,
    role            text NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    venue_scope     text[],                  -- NULL: every venue of the organisation
    issued_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    CHECK (expires_at > issued_at)
);
CREATE INDEX tokens_org ON tokens (organization_id, issued_at);

CREATE TABLE token_revocations (
    id              bigserial PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    jti             text,                    -- one token ...
    issued_before   timestamptz,             -- ... or every token issued before this time
    revoked_by      text NOT NULL,
    revoked_at      timestamptz NOT NULL DEFAULT now(),
    keep_until      timestamptz NOT NULL,    -- no token it revokes is valid after this
    CHECK ((jti IS NULL) <> (issued_before IS NULL))
);
CREATE INDEX token_revocations_org ON token_revocations (organization_id, keep_until);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tokens', 'token_revocations'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO wedding_tenant USING '
            '(organization_id = current_setting(''app.organization_id'', true))', t);
        EXECUTE format('GRANT SELECT ON %I TO wedding_tenant', t);
    END LOOP;
END $$;
GRANT INSERT ON tokens, token_revocations TO wedding_tenant;
GRANT USAGE ON SEQUENCE token_revocations_id_seq TO wedding_tenant;
