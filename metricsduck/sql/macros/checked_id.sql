-- checked_id(id, uses): `id`, a hash of the key columns of a row, where `uses` (how many
-- rows of its relation have that id) is 1; otherwise the query fails rather than let two
-- rows share an id (a 64-bit collision: about 3e-8 at a million pairs). Ids derived from
-- the key columns, unlike a row number over the relation, are the same whichever rows
-- share the relation, so a tree cut into parts gives each row the id it has whole.
CREATE OR REPLACE MACRO checked_id(id, uses) AS
    CASE WHEN uses = 1 THEN id
    ELSE error('metricsduck: ' || uses || ' rows share the id ' || id || ' (a hash collision of their key '
               || 'columns); report this with the tree it happened on') END;
