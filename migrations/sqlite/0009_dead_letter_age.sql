-- Retention finds the dead letters past their age by that age: without this index it
-- read every dead letter (and, with the state bound rather than written, every
-- delivery) at each prune. Only dead letters are in it.
CREATE INDEX deliveries_dead_age ON deliveries (updated_at) WHERE state = 'dead';
