-- Push to apps, beyond the queue itself (0001's push_events): the retention watermark
-- per device, the devices' provider tokens, and the outcome of every provider push.

-- Per device: the highest seq that retention removed. A client resuming from an older
-- seq is then told it missed events (`gap`), even once all its events are gone; and
-- the highest seq ever issued to a device stays known (max of this and the queue).
CREATE TABLE push_devices (
    account     TEXT NOT NULL,
    device      TEXT NOT NULL,
    purged_seq  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, device)
);

-- Provider push tokens (APNs VoIP token, FCM registration token, Baidu channel).
-- A token addresses one app install, so it belongs to one (account, device): an
-- install that logs in to another account takes its token along instead of waking
-- the phone for both. One token per provider per device: a new one replaces the old.
CREATE TABLE push_tokens (
    provider    TEXT NOT NULL,
    token       TEXT NOT NULL,
    account     TEXT NOT NULL,
    device      TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE UNIQUE INDEX push_tokens_device ON push_tokens(account, device, provider);

-- One row per attempt to hand an event to a provider: what operators look at when a
-- phone "did not ring". `seq` is the push_events seq (the event may be purged since).
CREATE TABLE push_deliveries (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account      TEXT NOT NULL,
    device       TEXT NOT NULL,
    provider     TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    status       TEXT NOT NULL,
    http_status  BIGINT,
    reason       TEXT,
    created_ms   BIGINT NOT NULL
);
CREATE INDEX push_deliveries_device ON push_deliveries(account, device, id);
CREATE INDEX push_deliveries_created ON push_deliveries(created_ms);

-- Retention deletes queued events by age.
CREATE INDEX push_events_created ON push_events(created_ms);
