-- Replay after a blueprint fix: an entry written when a stored event is mapped again
-- names the entry of its earlier mapping.
ALTER TABLE live_logs ADD COLUMN replaces TEXT COLLATE "C";
