-- Live Logs filters, indexed: each filter of the list reads its own index newest first
-- (the list is `WHERE integration_id = $1 AND ... ORDER BY id DESC LIMIT n`, and a time
-- range is a range on the time-ordered id), so a filter that matches rarely or not
-- at all answers as fast as one that matches every entry; combined filters are planned
-- with their values (store/postgres/logs.rs), so the narrowest index serves them. The
-- lone messageId index gives way to the one per integration: every query that looked
-- entries up by messageId also names the integration.
DROP INDEX live_logs_message;
-- The outcome's index carries the event name and the event name's the outcome (after
-- the id, so each still reads newest first): filters on both are checked in the index,
-- without reading the entries that do not match.
CREATE INDEX live_logs_outcome ON live_logs (integration_id, outcome, id, event_name);
CREATE INDEX live_logs_event ON live_logs (integration_id, event_name, id, outcome);
CREATE INDEX live_logs_message ON live_logs (integration_id, message_id, id);
-- Test Event entries are few: a partial index holds only them.
CREATE INDEX live_logs_test ON live_logs (integration_id, id) WHERE test;
-- How often each outcome and each event name occurs per integration: without these,
-- the planner multiplies the two columns' frequencies over the whole table, and for a
-- filter that matches nothing in one integration (`delivered` where every entry was
-- filtered) it expects many matches and walks the newest entries one by one looking
-- for them. With them, it reads the filter's own index.
CREATE STATISTICS live_logs_outcomes (mcv) ON integration_id, outcome FROM live_logs;
CREATE STATISTICS live_logs_events (mcv) ON integration_id, event_name FROM live_logs;
ANALYZE live_logs;
