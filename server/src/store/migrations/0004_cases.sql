-- np-server schema, version 4: support cases. A case's number comes from a sequence, so
-- replicas never give one twice; the record is the same JSON the sled store keeps.
-- (Version 3 is the keyring's migration; the runner applies every version it lacks.)
CREATE SEQUENCE case_numbers START 1001;
CREATE TABLE cases (
    number bigint PRIMARY KEY,
    serial text COLLATE "C" NOT NULL,
    record text NOT NULL
);
CREATE INDEX cases_by_serial ON cases (serial, number);
