-- An organisation deleted by hand (DELETE FROM organizations, which cascades its tokens and
-- revocations away) leaves a tombstone, so its tokens stop working at once instead of
-- reading its live tables until they expire (an operator's trial: a deleted organisation's
-- viewer token still read its venue metrics and payments summary, and `token revoke` could
-- no longer name it). stream_app.db.tokens.fetch_revocations reads it; a token of an
-- organisation with a tombstone and no row is refused (401 token_revoked). Registering the id
-- again keeps the tombstone but the row decides: tokens issued before the new registration
-- are refused by its created_at (stream_app.db.tokens.Revocations), new ones work.
CREATE TABLE deleted_organizations (
    organization_id text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- SECURITY DEFINER: runs as the owner that applied the migrations (who deletes organisations;
-- the tombstone is written whatever role deletes the row, under its row-level security).
CREATE FUNCTION wedding_organization_tombstone() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO deleted_organizations (organization_id, deleted_at)
    VALUES (OLD.id, now())
    ON CONFLICT (organization_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
    RETURN NULL;
END $$;

CREATE TRIGGER wedding_organization_tombstone AFTER DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION wedding_organization_tombstone();
