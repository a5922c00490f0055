-- np-server schema, version 1. Records are kept as the same JSON the sled store keeps;
-- keys are columns so that lookups, ranges and row locks need no JSON.
-- Serials and versions sort byte-wise (COLLATE "C"), as in the sled store.
CREATE TABLE devices (
    serial text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    serial text COLLATE "C",
    entry text NOT NULL
);
CREATE INDEX audit_by_serial ON audit (serial, id);
CREATE TABLE releases (
    version text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE device_reports (
    serial text COLLATE "C" PRIMARY KEY,
    report text NOT NULL
);
CREATE TABLE device_events (
    id bigserial PRIMARY KEY,
    serial text COLLATE "C" NOT NULL,
    event text NOT NULL
);
CREATE INDEX device_events_by_serial ON device_events (serial, id);
CREATE TABLE request_nonces (
    serial text COLLATE "C" NOT NULL,
    nonce text COLLATE "C" NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (serial, nonce)
);
CREATE INDEX request_nonces_by_expiry ON request_nonces (expires);
CREATE TABLE tokens (
    name text COLLATE "C" PRIMARY KEY,
    sha256 text NOT NULL UNIQUE,
    record text NOT NULL
);
