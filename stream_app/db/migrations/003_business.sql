-- Business history that 001 lacks: a planner's offices and a caterer's menus, ingredients,
-- events and per-event ingredient usage. Conventions of 001: every tenant row carries
-- organization_id; money is bigint minor units + ISO 4217 code; calendar dates are local dates
-- in the organisation's IANA zone; row-level security on every tenant table.
--
-- Photographers are suppliers with kind 'photographer'; a photography booking names its
-- photographer in bookings.supplier_id. A planner's booking names its office in
-- bookings.office_id (added here).

CREATE TABLE offices (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    name            text NOT NULL,
    city            text NOT NULL,
    opened_on       date,
    PRIMARY KEY (organization_id, id)
);

ALTER TABLE bookings ADD COLUMN office_id text;

CREATE TABLE catering_menus (
    organization_id       text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id                    text NOT NULL,
    name                  text NOT NULL,
    price_per_cover_minor bigint NOT NULL CHECK (price_per_cover_minor >= 0),
    currency              char(3) NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE catering_ingredients (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    name            text NOT NULL,
    unit            text NOT NULL CHECK (unit IN ('kg', 'l', 'piece')),
    unit_cost_minor bigint NOT NULL CHECK (unit_cost_minor >= 0),  -- per one unit
    currency        char(3) NOT NULL,
    PRIMARY KEY (organization_id, id)
);

-- A menu's recipe: quantity of each ingredient per cover (in the ingredient's unit).
CREATE TABLE catering_menu_items (
    organization_id    text NOT NULL,
    menu_id            text NOT NULL,
    ingredient_id      text NOT NULL,
    quantity_per_cover numeric(12, 4) NOT NULL CHECK (quantity_per_cover > 0),
    PRIMARY KEY (organization_id, menu_id, ingredient_id),
    FOREIGN KEY (organization_id, menu_id) REFERENCES catering_menus ON DELETE CASCADE,
    FOREIGN KEY (organization_id, ingredient_id) REFERENCES catering_ingredients ON DELETE CASCADE
);

-- One catered event (a wedding's meal) under one booking.
CREATE TABLE catering_events (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              text NOT NULL,
    booking_id      text NOT NULL,
    wedding_id      text,
    menu_id         text NOT NULL,
    event_date      date NOT NULL,      -- local date, organisation zone
    covers          integer NOT NULL CHECK (covers >= 0),
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, menu_id) REFERENCES catering_menus ON DELETE CASCADE
);
CREATE INDEX catering_events_date ON catering_events (organization_id, event_date);

-- Ingredient usage of one event: quantity taken for it, and how much of that was thrown away.
CREATE TABLE catering_usage (
    organization_id  text NOT NULL,
    event_id         text NOT NULL,
    ingredient_id    text NOT NULL,
    quantity_used    numeric(12, 3) NOT NULL CHECK (quantity_used >= 0),
    quantity_wasted  numeric(12, 3) NOT NULL
                     CHECK (quantity_wasted >= 0 AND quantity_wasted <= quantity_used),
    PRIMARY KEY (organization_id, event_id, ingredient_id),
    FOREIGN KEY (organization_id, event_id) REFERENCES catering_events ON DELETE CASCADE,
    FOREIGN KEY (organization_id, ingredient_id) REFERENCES catering_ingredients
        ON DELETE CASCADE
);

-- Reads of the business reports: by organisation and service date; payments and feedback by
-- booking.
CREATE INDEX IF NOT EXISTS bookings_org_service_date ON bookings (organization_id, service_date);
CREATE INDEX IF NOT EXISTS payments_org_booking ON payments (organization_id, booking_id);
CREATE INDEX IF NOT EXISTS feedback_org_booking ON feedback (organization_id, booking_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['offices','catering_menus','catering_ingredients',
                             'catering_menu_items','catering_events','catering_usage'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO wedding_tenant USING '
            '(organization_id = current_setting(''app.organization_id'', true))', t);
        EXECUTE format('GRANT SELECT ON %I TO wedding_tenant', t);
    END LOOP;
END $$;
