-- Reconciliation: transfers with deterministic per-chain ids, their history and outbox, watched
-- transactions, and the projections backends query (streams, virtual balances, producers,
-- customer plans) with stable views over them.
--
-- Ids of transfers, history rows and outbox rows are allocated per chain from `chain_sequences`
-- inside the writer's transaction, not from a Postgres sequence: a sequence is not rolled back
-- with a failed transaction, so a crash mid-batch would leave gaps and a restarted run would
-- number its rows differently from an uninterrupted one. With transactional counters the ids
-- of a chain depend only on the chain's history.
--
-- 0001 created transfers, transfer_history and outbox without ever writing to them; they are
-- recreated here with chain-scoped keys.

DROP TABLE outbox;
DROP TABLE transfer_history;
DROP TABLE transfers;

CREATE TABLE chain_sequences (
    chain            TEXT PRIMARY KEY REFERENCES chains (name),
    next_transfer_id BIGINT NOT NULL DEFAULT 1,
    next_event_seq   BIGINT NOT NULL DEFAULT 1
);

-- Tracked transfers. `identity` is the transfer's on-chain identity within (chain, kind):
-- '<tx_hash>:<n>' for the n-th log of that event in a transaction (stable when a reorg moves the
-- transaction to another block), '<tx_hash>' for a watched transaction, '<account>:<lt>' on TON.
CREATE TABLE transfers (
    chain           TEXT NOT NULL REFERENCES chains (name),
    id              BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN (
                        'stream_lock_created', 'stream_settled', 'partial_claim',
                        'emergency_withdraw', 'balance_withdrawn', 'watched_tx',
                        'ton_deposit', 'jetton_deposit', 'ton_outgoing')),
    identity        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN (
                        'pending', 'confirming', 'confirmed', 'failed', 'reorged')),
    -- Side state: set while the transfer is stuck; cleared when it makes progress.
    stuck           BOOLEAN NOT NULL DEFAULT false,
    failure_reason  TEXT,
    tx_hash         BYTEA,
    block_hash      BYTEA,
    block_number    BIGINT,
    log_index       INTEGER,
    contract        BYTEA,
    token           BYTEA,
    from_address    BYTEA,
    to_address      BYTEA,
    amount          NUMERIC(78, 0),
    details         JSONB NOT NULL DEFAULT '{}'::jsonb,
    first_seen_at   TIMESTAMPTZ NOT NULL,
    -- The chain tip (indexed height) when the transfer was first seen: stuck_after_blocks counts from here.
    first_seen_block BIGINT,
    included_at     TIMESTAMPTZ,
    reorged_at      TIMESTAMPTZ,
    confirmed_at    TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, id),
    UNIQUE (chain, kind, identity)
);
CREATE INDEX transfers_open ON transfers (chain, status, block_number)
    WHERE status IN ('pending', 'confirming', 'reorged');
CREATE INDEX transfers_tx ON transfers (chain, tx_hash);

-- Every status transition of a transfer (and every change of its stuck flag), with its reason
-- and the block that caused it. `seq` orders a chain's history and outbox together.
CREATE TABLE transfer_history (
    chain         TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    transfer_id   BIGINT NOT NULL,
    from_status   TEXT,
    to_status     TEXT NOT NULL,
    stuck         BOOLEAN NOT NULL,
    reason        TEXT NOT NULL,
    block_number  BIGINT,
    at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, seq),
    FOREIGN KEY (chain, transfer_id) REFERENCES transfers (chain, id) ON DELETE CASCADE
);
CREATE INDEX transfer_history_transfer ON transfer_history (chain, transfer_id, seq);

-- Transactional outbox: one row per event to deliver (webhooks, NOTIFY), written in the same
-- transaction as the change it describes. (chain, seq) is the event's stable id.
CREATE TABLE outbox (
    chain           TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    topic           TEXT NOT NULL,
    transfer_id     BIGINT,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error_kind TEXT,
    delivered_at    TIMESTAMPTZ,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;

-- Transactions a backend registered before they were mined (`chainsync watch`, later POST /v1/watch).
CREATE TABLE watched_transactions (
    chain          TEXT NOT NULL REFERENCES chains (name),
    tx_hash        BYTEA NOT NULL CHECK (length(tx_hash) = 32),
    sender         BYTEA CHECK (sender IS NULL OR length(sender) = 20),
    nonce          BIGINT CHECK (nonce IS NULL OR nonce >= 0),
    label          TEXT,
    registered_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, tx_hash)
);

-- Per contract, the last block whose confirmed logs are folded into the projections (at most its
-- indexed_to). A reorg beyond the confirmation threshold resets it and the projections are rebuilt.
ALTER TABLE contract_cursors ADD COLUMN projected_to BIGINT;

-- One row per created stream, keyed by its creating log (never by lockId alone: two identical
-- creates in one block share a lockId, and the later one overwrites the earlier on-chain).
CREATE TABLE streams (
    chain            TEXT NOT NULL REFERENCES chains (name),
    tx_hash          BYTEA NOT NULL,
    log_index        INTEGER NOT NULL,
    block_number     BIGINT NOT NULL,
    manager          BYTEA NOT NULL,
    lock_id          BYTEA NOT NULL,
    user_address     BYTEA NOT NULL,
    recipient        BYTEA NOT NULL,
    token            BYTEA NOT NULL,
    total_amount     NUMERIC(78, 0) NOT NULL,
    duration_seconds NUMERIC(78, 0) NOT NULL,
    -- From getTokenLock (fields the event does not carry; NULL when it could not be read).
    stream_rate      NUMERIC(78, 0),
    stream_type      SMALLINT,
    usage_count      NUMERIC(78, 0),
    start_time       TIMESTAMPTZ NOT NULL,
    end_time         TIMESTAMPTZ NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('active', 'settled', 'emergency_withdrawn', 'depleted', 'superseded')),
    claimed_amount   NUMERIC(78, 0) NOT NULL DEFAULT 0,
    used_count       NUMERIC(78, 0) NOT NULL DEFAULT 0,
    settled_amount   NUMERIC(78, 0),
    returned_amount  NUMERIC(78, 0),
    withdrawn_amount NUMERIC(78, 0),
    settle_trigger   TEXT CHECK (settle_trigger IN
                         ('user_cancellation', 'producer_claim', 'auto_expiration', 'consumer_usage')),
    customer_plan_id NUMERIC(78, 0),
    producer         BYTEA,
    -- Another stream was created later with the same lockId (it replaced this one on-chain).
    duplicate_lock_id BOOLEAN NOT NULL DEFAULT false,
    closed_block     BIGINT,
    overdue_since    TIMESTAMPTZ,
    PRIMARY KEY (chain, tx_hash, log_index)
);
CREATE INDEX streams_lock ON streams (chain, manager, lock_id);
CREATE INDEX streams_user ON streams (chain, user_address);
CREATE INDEX streams_recipient ON streams (chain, recipient);

-- The manager's virtual balances per (user, token), following the contract's bookkeeping.
CREATE TABLE virtual_balances (
    chain            TEXT NOT NULL REFERENCES chains (name),
    manager          BYTEA NOT NULL,
    user_address     BYTEA NOT NULL,
    token            BYTEA NOT NULL,
    total            NUMERIC(78, 0) NOT NULL DEFAULT 0,
    locked           NUMERIC(78, 0) NOT NULL DEFAULT 0,
    -- Paid out of usage pools: the contract unlocks these without lowering `total`, so this much
    -- of the total is no longer backed by tokens (the documented usage-pool drift).
    usage_paid       NUMERIC(78, 0) NOT NULL DEFAULT 0,
    last_block       BIGINT NOT NULL,
    -- The last on-chain check (getBalanceSummary) and how far it was from the projection.
    onchain_total    NUMERIC(78, 0),
    onchain_locked   NUMERIC(78, 0),
    onchain_unlocked NUMERIC(78, 0),
    checked_block    BIGINT,
    checked_at       TIMESTAMPTZ,
    drift_total      NUMERIC(78, 0),
    drift_locked     NUMERIC(78, 0),
    PRIMARY KEY (chain, manager, user_address, token)
);

-- Producers registered in ProducerStorage (LogProducer).
CREATE TABLE producers (
    chain          TEXT NOT NULL REFERENCES chains (name),
    clone_address  BYTEA NOT NULL,
    producer_address BYTEA NOT NULL,
    producer_id    NUMERIC(78, 0) NOT NULL,
    name           TEXT NOT NULL,
    registry       BYTEA NOT NULL,
    block_number   BIGINT NOT NULL,
    tx_hash        BYTEA NOT NULL,
    PRIMARY KEY (chain, clone_address)
);

-- Customer plans with a stream, from the manager's CustomerPlanStreamCreated and the producer
-- clone's CustomerPlanWithStreamCreated.
CREATE TABLE customer_plans (
    chain            TEXT NOT NULL REFERENCES chains (name),
    producer         BYTEA NOT NULL,
    customer_plan_id NUMERIC(78, 0) NOT NULL,
    customer         BYTEA NOT NULL,
    lock_id          BYTEA NOT NULL,
    block_number     BIGINT NOT NULL,
    tx_hash          BYTEA NOT NULL,
    PRIMARY KEY (chain, producer, customer_plan_id)
);

ALTER TABLE chain_status ADD COLUMN stalled_since TIMESTAMPTZ;
ALTER TABLE chain_status ADD COLUMN deep_reorgs BIGINT NOT NULL DEFAULT 0;

INSERT INTO chain_sequences (chain) SELECT name FROM chains ON CONFLICT DO NOTHING;

-- Stable read interface for backends (documented in the README). Addresses and hashes are
-- rendered as 0x-prefixed lowercase hex, amounts stay NUMERIC in base units.
CREATE VIEW v_transfers AS
SELECT t.chain, t.id, t.kind, t.identity, t.status, t.stuck, t.failure_reason,
       '0x' || encode(t.tx_hash, 'hex') AS tx_hash,
       '0x' || encode(t.block_hash, 'hex') AS block_hash,
       t.block_number, t.log_index,
       '0x' || encode(t.contract, 'hex') AS contract,
       '0x' || encode(t.token, 'hex') AS token,
       '0x' || encode(t.from_address, 'hex') AS from_address,
       '0x' || encode(t.to_address, 'hex') AS to_address,
       t.amount, t.details, t.first_seen_at, t.included_at, t.confirmed_at, t.updated_at
FROM transfers t;

CREATE VIEW v_streams AS
SELECT s.chain,
       '0x' || encode(s.tx_hash, 'hex') AS tx_hash, s.log_index, s.block_number,
       '0x' || encode(s.manager, 'hex') AS manager,
       '0x' || encode(s.lock_id, 'hex') AS lock_id,
       '0x' || encode(s.user_address, 'hex') AS user_address,
       '0x' || encode(s.recipient, 'hex') AS recipient,
       '0x' || encode(s.token, 'hex') AS token,
       s.total_amount, s.duration_seconds, s.stream_rate,
       CASE s.stream_type WHEN 0 THEN 'regular' WHEN 1 THEN 'vesting' WHEN 2 THEN 'usage_pool' END AS stream_type,
       s.usage_count, s.used_count, s.start_time, s.end_time, s.status, s.claimed_amount,
       s.settled_amount, s.returned_amount, s.withdrawn_amount, s.settle_trigger,
       s.customer_plan_id, '0x' || encode(s.producer, 'hex') AS producer,
       s.duplicate_lock_id, s.overdue_since IS NOT NULL AS overdue, s.overdue_since
FROM streams s;

CREATE VIEW v_balances AS
SELECT b.chain,
       '0x' || encode(b.manager, 'hex') AS manager,
       '0x' || encode(b.user_address, 'hex') AS user_address,
       '0x' || encode(b.token, 'hex') AS token,
       b.total, b.locked, b.total - b.locked AS unlocked,
       b.usage_paid AS usage_pool_drift,
       GREATEST(b.total - b.locked - b.usage_paid, 0) AS stranded,
       b.onchain_total, b.onchain_locked, b.onchain_unlocked, b.checked_block, b.checked_at,
       b.drift_total, b.drift_locked,
       (b.drift_total IS NOT NULL AND (b.drift_total <> 0 OR b.drift_locked <> 0)) AS drifted
FROM virtual_balances b;
