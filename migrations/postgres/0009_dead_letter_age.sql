-- Retention finds the dead letters past their age by that age: without this index it
-- read every dead letter at each prune. Only dead letters are in it.
CREATE INDEX deliveries_dead_age ON deliveries (updated_at) WHERE state = 'dead';
