-- TON: what links transactions together (message hashes), and the two TON projections.
--
-- Transfers of TON use the shared `transfers` table and state machine:
--   ton_deposit     identity '<account>:<lt>'          incoming TON on a `deposit` account
--   jetton_deposit  identity '<jetton wallet>:<lt>'    internal_transfer credited on a watched owner's jetton wallet
--   ton_outgoing    identity 'msg:<hex message hash>'  one outgoing message of a `hot_wallet`
--                   identity 'ext:<hex normalised hash>' an external message registered before it lands
-- `block_number` is the masterchain seqno at which the deciding transaction was first seen;
-- addresses, comments and links are in `details` and in the projections below.

-- Which role's poll stored the transaction, and the hash of its inbound message: a destination
-- transaction consuming an outgoing message is found by it.
ALTER TABLE ton_transactions ADD COLUMN in_msg_hash BYTEA;
ALTER TABLE ton_transactions ADD COLUMN normalized_ext_hash BYTEA;
CREATE INDEX ton_transactions_in_msg ON ton_transactions (chain, in_msg_hash);
CREATE INDEX ton_transactions_ext ON ton_transactions (chain, normalized_ext_hash)
    WHERE normalized_ext_hash IS NOT NULL;

-- Per-account cursors also cover derived accounts (a watched owner's jetton wallet).
ALTER TABLE ton_account_cursors ADD COLUMN owner TEXT;
ALTER TABLE ton_account_cursors ADD COLUMN jetton_master TEXT;

-- Incoming payments credited to watched accounts: TON on deposit accounts, jettons on the jetton
-- wallets of watched owners. One row per crediting transaction.
CREATE TABLE ton_deposits (
    chain            TEXT NOT NULL REFERENCES chains (name),
    transfer_id      BIGINT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('ton', 'jetton')),
    -- The watched account credited (the owner, for jettons).
    account          TEXT NOT NULL,
    -- The account whose transaction credits it (the owner's jetton wallet, for jettons).
    tx_account       TEXT NOT NULL,
    lt               NUMERIC(20, 0) NOT NULL,
    tx_hash          BYTEA NOT NULL CHECK (length(tx_hash) = 32),
    -- Who paid: the message source (TON) or the jetton sender (`from` of internal_transfer).
    sender           TEXT,
    -- Nanotons (TON) or the jetton's base units.
    amount           NUMERIC(78, 0) NOT NULL,
    jetton_master    TEXT,
    comment          TEXT,
    -- The configured memo prefix matched the comment (NULL when the account has no memo).
    memo_matched     BOOLEAN,
    -- Jettons: forward TON attached, and whether the owner's transfer_notification was seen.
    forward_ton_amount NUMERIC(78, 0),
    notified         BOOLEAN,
    utime            TIMESTAMPTZ NOT NULL,
    mc_seqno_seen    BIGINT NOT NULL,
    PRIMARY KEY (chain, tx_account, lt)
);
CREATE INDEX ton_deposits_account ON ton_deposits (chain, account, lt);

-- Outgoing messages of hot wallets: each is an edge, pending until the destination's transaction
-- consuming it is found (delivered), or the destination fails it (bounced / failed).
CREATE TABLE ton_transfers (
    chain            TEXT NOT NULL REFERENCES chains (name),
    transfer_id      BIGINT NOT NULL,
    msg_hash         BYTEA NOT NULL CHECK (length(msg_hash) = 32),
    source           TEXT NOT NULL,
    destination      TEXT NOT NULL,
    value            NUMERIC(78, 0) NOT NULL,
    bounce           BOOLEAN NOT NULL,
    comment          TEXT,
    created_lt       NUMERIC(20, 0) NOT NULL,
    source_lt        NUMERIC(20, 0) NOT NULL,
    source_tx_hash   BYTEA NOT NULL,
    -- TEP-467 normalised hash of the external message that made the hot wallet send it.
    ext_normalized_hash BYTEA,
    outcome          TEXT NOT NULL CHECK (outcome IN ('pending', 'delivered', 'bounced', 'failed')),
    dest_lt          NUMERIC(20, 0),
    dest_tx_hash     BYTEA,
    -- The hot wallet's transaction receiving the bounced message.
    bounce_lt        NUMERIC(20, 0),
    bounce_tx_hash   BYTEA,
    -- The message the destination sent back when it bounced this one.
    bounce_msg_hash  BYTEA,
    -- The destination's compute exit code when it failed the message.
    exit_code        INTEGER,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, msg_hash)
);
CREATE INDEX ton_transfers_pending ON ton_transfers (chain) WHERE outcome = 'pending';
CREATE INDEX ton_transfers_bounce ON ton_transfers (chain, bounce_msg_hash)
    WHERE bounce_msg_hash IS NOT NULL;

CREATE VIEW v_ton_deposits AS
SELECT d.chain, d.kind, d.account, d.tx_account, d.lt, encode(d.tx_hash, 'hex') AS tx_hash,
       d.sender, d.amount, d.jetton_master, d.comment, d.memo_matched, d.forward_ton_amount,
       d.notified, d.utime, d.mc_seqno_seen, t.id AS transfer_id, t.status, t.stuck,
       t.failure_reason, t.confirmed_at
FROM ton_deposits d JOIN transfers t ON t.chain = d.chain AND t.id = d.transfer_id;

CREATE VIEW v_ton_transfers AS
SELECT x.chain, encode(x.msg_hash, 'hex') AS msg_hash, x.source, x.destination, x.value, x.bounce,
       x.comment, x.created_lt, x.source_lt, encode(x.source_tx_hash, 'hex') AS source_tx_hash,
       encode(x.ext_normalized_hash, 'hex') AS ext_normalized_hash, x.outcome, x.dest_lt,
       encode(x.dest_tx_hash, 'hex') AS dest_tx_hash, x.bounce_lt,
       encode(x.bounce_tx_hash, 'hex') AS bounce_tx_hash, x.exit_code,
       t.id AS transfer_id, t.status, t.stuck, t.failure_reason, t.confirmed_at
FROM ton_transfers x JOIN transfers t ON t.chain = x.chain AND t.id = x.transfer_id;
