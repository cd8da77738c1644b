-- GDPR data-subject requests (Art. 15 access, 17 erasure, 16 rectification, 20 portability)
-- and when they were answered; read by the compliance report (stream_app/reports/compliance.py).
-- Time: timestamptz (UTC); the one-month deadline of Art. 12(3) is computed by the report in
-- the organisation's IANA zone.

CREATE TABLE gdpr_requests (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    client_id       text,                 -- the data subject (may be unknown to clients)
    kind            text NOT NULL CHECK (kind IN ('access', 'erasure', 'rectification', 'portability')),
    received_at     timestamptz NOT NULL,
    -- when the answer went out (the request fulfilled, or refused with reasons, Art. 12(4))
    completed_at    timestamptz,
    status          text NOT NULL CHECK (status IN ('received', 'in_progress', 'completed', 'refused')),
    PRIMARY KEY (organization_id, id),
    CHECK ((status IN ('completed', 'refused')) = (completed_at IS NOT NULL)),
    CHECK (completed_at IS NULL OR completed_at >= received_at)
);
CREATE INDEX gdpr_requests_received ON gdpr_requests (organization_id, received_at);
CREATE INDEX gdpr_requests_open ON gdpr_requests (organization_id) WHERE completed_at IS NULL;

-- The payment audit joins payments to their booking (same name as in 003_business.sql, so
-- whichever runs first creates it and the other finds it).
CREATE INDEX IF NOT EXISTS payments_org_booking ON payments (organization_id, booking_id);

-- Row-level security, as in 001: the tenant role sees only the rows of the organisation named
-- in app.organization_id.
ALTER TABLE gdpr_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON gdpr_requests TO wedding_tenant
    USING (organization_id = current_setting('app.organization_id', true));
GRANT SELECT ON gdpr_requests TO wedding_tenant;
