-- np-server schema, version 2: signed receipts of boxes and the rollout guard's marks.
CREATE TABLE device_receipts (
    serial text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    receipt text NOT NULL,
    PRIMARY KEY (serial, seq)
);
-- `changed` is raised by every write of a mark, so that each replica's guard can follow
-- the marks other replicas store.
CREATE SEQUENCE rollout_tallies_changes;
CREATE TABLE rollout_tallies (
    version text COLLATE "C" NOT NULL,
    serial text COLLATE "C" NOT NULL,
    mark text NOT NULL,
    changed bigint NOT NULL DEFAULT nextval('rollout_tallies_changes'),
    PRIMARY KEY (version, serial)
);
CREATE INDEX rollout_tallies_by_change ON rollout_tallies (changed);
