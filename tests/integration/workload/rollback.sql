-- The chain rolls back: the newest certificates vanish, as db-sync deletes a
-- suffix of delegation ids.
DELETE FROM delegation WHERE id > (SELECT max(id) - 3 FROM delegation);
