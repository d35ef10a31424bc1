-- Initial schema (PostgreSQL). Times are unix milliseconds (BIGINT) so the same queries
-- work on SQLite (INTEGER); JSON documents are TEXT for the same reason.

-- Accounts. `uuid` is the account id apps send (a phone number for self-registered
-- accounts). The password is only ever stored as an Argon2id PHC string.
CREATE TABLE accounts (
    uuid        TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    pwd_hash    TEXT NOT NULL,
    grp         TEXT NOT NULL DEFAULT '',
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    info        TEXT NOT NULL DEFAULT '{}',
    created_ms  BIGINT NOT NULL
);

-- Phone numbers owned by accounts: a trunk call to `phone` is a sip_call_in for
-- `account`. One owner per number.
CREATE TABLE phone_bindings (
    phone       TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts(uuid) ON DELETE CASCADE,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX phone_bindings_account ON phone_bindings(account);

-- One-time SMS codes. Only a hash of the code is kept; `attempts` counts wrong
-- guesses so a 6-digit code cannot be brute-forced within its lifetime.
CREATE TABLE auth_codes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    code_hash   TEXT NOT NULL,
    device      TEXT NOT NULL DEFAULT '',
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    used        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX auth_codes_phone ON auth_codes(phone, created_ms);

-- The current login of each account (one device at a time). Only a hash of the
-- token is kept, so a copy of the database does not hand out sessions.
CREATE TABLE logins (
    account     TEXT PRIMARY KEY REFERENCES accounts(uuid) ON DELETE CASCADE,
    device      TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_ms  BIGINT NOT NULL
);

-- Call detail records: inserted `live` when a call starts, `ended` exactly once.
CREATE TABLE call_records (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id    TEXT NOT NULL UNIQUE,
    account       TEXT,
    peer_account  TEXT,
    caller        TEXT NOT NULL,
    callee        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    trunk         TEXT,
    call_ms       BIGINT NOT NULL,
    ring_ms       BIGINT,
    answer_ms     BIGINT,
    end_ms        BIGINT,
    duration_s    BIGINT NOT NULL DEFAULT 0,
    outcome       TEXT,
    sip_status    BIGINT,
    codecs        TEXT NOT NULL DEFAULT '',
    quality       TEXT,
    state         TEXT NOT NULL DEFAULT 'live',
    node          TEXT NOT NULL
);
CREATE INDEX call_records_account ON call_records(account, id);
CREATE INDEX call_records_peer_account ON call_records(peer_account, id);
CREATE INDEX call_records_live ON call_records(node) WHERE state = 'live';

-- Last sign of life of each switch process; closes its orphaned live records.
CREATE TABLE node_heartbeats (
    node     TEXT PRIMARY KEY,
    last_ms  BIGINT NOT NULL
);

-- Events for apps, delivered in `seq` order to the device's long poll.
CREATE TABLE push_events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account       TEXT NOT NULL,
    device        TEXT NOT NULL,
    event         TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    delivered_ms  BIGINT
);
CREATE INDEX push_events_device ON push_events(account, device, seq);
