-- Live Logs filters, indexed: each filter of the list reads its own index newest first
-- (the list is `WHERE integration_id = ? AND ... ORDER BY id DESC LIMIT n`, and a time
-- range is a range on the time-ordered id), so a filter that matches rarely or not
-- at all answers as fast as one that matches every entry. Combined filters read the
-- narrowest of these (see store/sqlite/logs.rs). The lone messageId index gives way
-- to the one per integration: every query that looked entries up by messageId also
-- names the integration.
DROP INDEX live_logs_message;
-- The outcome's index carries the event name and the event name's the outcome (after
-- the id, so each still reads newest first): filters on both are checked in the index,
-- without reading the entries that do not match.
CREATE INDEX live_logs_outcome ON live_logs (integration_id, outcome, id, event_name);
CREATE INDEX live_logs_event ON live_logs (integration_id, event_name, id, outcome);
CREATE INDEX live_logs_message ON live_logs (integration_id, message_id, id);
-- Test Event entries are few: a partial index holds only them.
CREATE INDEX live_logs_test ON live_logs (integration_id, id) WHERE test = 1;
