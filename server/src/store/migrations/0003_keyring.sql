-- np-server schema, version 3: the installed keyring (its version, online key ids and
-- root-signed envelope), so that replicas sharing the database sign under the same one.
-- One row (id = 1); its version only grows.
CREATE TABLE installed_keyring (
    id smallint PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL,
    record text NOT NULL
);
