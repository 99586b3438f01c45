-- No change to the schema: this marks a change of the stored format. Values are now
-- packed with the version 2 dictionaries (leading byte 2; store/pack.rs), which a
-- release from before it would take for text and pass on as they are (a request body
-- of packed bytes sent to Button). With this migration applied, such a release refuses
-- the database at start instead (unknown applied migration).
SELECT 1;
