-- History of the wedding businesses, one schema for every tenant.
-- Money: bigint minor units + ISO 4217 code. Time: timestamptz (UTC). Calendar dates: date,
-- meaning a local date in the organisation's IANA zone.

CREATE TABLE organizations (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    time_zone   text NOT NULL,          -- IANA zone, e.g. Europe/Lisbon (checked by the app)
    currency    char(3) NOT NULL,       -- ISO 4217 default currency
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE venues (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    name            text NOT NULL,
    capacity        integer CHECK (capacity IS NULL OR capacity >= 0),  -- events per day
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE venue_closures (
    organization_id text NOT NULL,
    venue_id        text NOT NULL,
    closed_on       date NOT NULL,
    reason          text,
    PRIMARY KEY (organization_id, venue_id, closed_on),
    FOREIGN KEY (organization_id, venue_id) REFERENCES venues ON DELETE CASCADE
);

CREATE TABLE suppliers (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    name            text NOT NULL,
    kind            text NOT NULL,        -- photographer, caterer, planner office, ...
    capacity        integer CHECK (capacity IS NULL OR capacity >= 0),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE clients (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    display_name    text,
    email           text,
    country         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE weddings (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    client_id       text,
    wedding_date    date NOT NULL,
    venue_id        text,
    guest_count     integer CHECK (guest_count IS NULL OR guest_count >= 0),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE bookings (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    venue_id        text,
    supplier_id     text,
    client_id       text,
    wedding_id      text,
    service_date    date NOT NULL,
    nights          integer NOT NULL DEFAULT 0 CHECK (nights >= 0),
    booked_at       timestamptz NOT NULL,
    amount_minor    bigint NOT NULL CHECK (amount_minor >= 0),
    currency        char(3) NOT NULL,
    status          text NOT NULL CHECK (status IN ('booked', 'cancelled', 'completed', 'no_show')),
    cancelled_at    timestamptz,
    source_event_id text,
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX bookings_service_date ON bookings (organization_id, venue_id, service_date);

CREATE TABLE payments (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    booking_id      text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('payment', 'refund')),
    amount_minor    bigint NOT NULL CHECK (amount_minor >= 0),
    currency        char(3) NOT NULL,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE feedback (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    client_id       text,
    booking_id      text,
    rating          smallint CHECK (rating BETWEEN 1 AND 5),
    nps             smallint CHECK (nps BETWEEN 0 AND 10),
    submitted_at    timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE reports (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    report_type     text NOT NULL,
    status          text NOT NULL CHECK (status IN ('queued','processing','completed','failed','cancelled')),
    request         jsonb NOT NULL,
    artifacts       jsonb NOT NULL DEFAULT '[]',
    error           text,
    processing_ms   double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reports_org ON reports (organization_id, created_at);

CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    organization_id text,
    actor           text NOT NULL,
    action          text NOT NULL,
    target          text,
    details         jsonb NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT now()
);

-- Row-level security: the second wall behind the query layer. The application role sees
-- only the rows of the organisation named in the transaction setting app.organization_id.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wedding_tenant') THEN
        CREATE ROLE wedding_tenant NOLOGIN;
    END IF;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['venues','venue_closures','suppliers','clients','weddings',
                             'bookings','payments','feedback','reports'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO wedding_tenant USING '
            '(organization_id = current_setting(''app.organization_id'', true))', t);
        EXECUTE format('GRANT SELECT ON %I TO wedding_tenant', t);
    END LOOP;
END $$;
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations TO wedding_tenant
    USING (id = current_setting('app.organization_id', true));
GRANT SELECT ON organizations TO wedding_tenant;
