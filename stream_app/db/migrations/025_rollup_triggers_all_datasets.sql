-- Every table the aggregation API reads keeps its rollups fresh (migration 017 marked dirty
-- buckets on bookings, payments, feedback, weddings and clients only): a rollup over
-- suppliers or venues kept answering its first figures after rows changed, and the planner's
-- and caterer's datasets (offices, catering_events, catering_menus, catering_ingredients)
-- are aggregated since this migration. tests/aggregation/test_rollups.py checks that every
-- dataset's table has the four triggers.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['suppliers', 'venues', 'offices', 'catering_events',
                             'catering_menus', 'catering_ingredients'] LOOP
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_ins AFTER INSERT ON %I'
                       ' REFERENCING NEW TABLE AS wedding_rollup_new'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_upd AFTER UPDATE ON %I'
                       ' REFERENCING NEW TABLE AS wedding_rollup_new OLD TABLE AS wedding_rollup_old'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_del AFTER DELETE ON %I'
                       ' REFERENCING OLD TABLE AS wedding_rollup_old'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_trunc AFTER TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_truncated()', t);
    END LOOP;
END $$;
