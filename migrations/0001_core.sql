-- Core schema of chainsync: chain identity, cursors, the recent-block window, raw events,
-- tracked transfers with their status history, and the outbox.
--
-- Conventions: amounts are NUMERIC(78,0) in base units; EVM addresses and hashes are stored as
-- raw bytes (20 / 32 bytes); TON addresses as raw `wc:hex` text; every raw row is keyed by its
-- on-chain identity so writes are idempotent upserts.

-- One row per configured chain or network, holding the identity that was first seen for it.
-- A database that belongs to another chain is refused at start-up by comparing against this row.
CREATE TABLE chains (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('evm', 'ton')),
    -- EVM: eth_chainId; NULL for TON.
    chain_id      BIGINT,
    -- EVM: hash of block 0; TON: root hash of the zero state.
    genesis_hash  BYTEA NOT NULL,
    -- TON: the configured network name (mainnet, testnet, or a private one); NULL for EVM.
    network       TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind <> 'evm' OR chain_id IS NOT NULL),
    CHECK (kind <> 'ton' OR network IS NOT NULL)
);

-- Per-contract indexing cursor: a contract added to the configuration later backfills from its
-- own start block while the others stay live. Producer clones found through LogProducer are added
-- here with the block they appeared in.
CREATE TABLE contract_cursors (
    chain         TEXT NOT NULL REFERENCES chains (name),
    address       BYTEA NOT NULL CHECK (length(address) = 20),
    role          TEXT NOT NULL,
    start_block   BIGINT NOT NULL CHECK (start_block >= 0),
    -- Last block whose logs for this contract are committed; NULL before the first batch.
    indexed_to    BIGINT,
    -- For discovered contracts: the log that announced them.
    discovered_by_tx BYTEA,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, address)
);

-- The recent-block window used for reorg detection (number -> hash/parent), persisted so that a
-- restart can still detect a reorg that happened while chainsync was down.
CREATE TABLE evm_blocks (
    chain         TEXT NOT NULL REFERENCES chains (name),
    number        BIGINT NOT NULL CHECK (number >= 0),
    hash          BYTEA NOT NULL CHECK (length(hash) = 32),
    parent_hash   BYTEA NOT NULL CHECK (length(parent_hash) = 32),
    timestamp     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, number)
);

-- Raw EVM logs under watched addresses, decoded where the event is known. Orphaned logs are kept
-- with removed = true for audit; unknown topics and logs that fail to decode are stored too.
CREATE TABLE evm_logs (
    chain           TEXT NOT NULL REFERENCES chains (name),
    block_hash      BYTEA NOT NULL CHECK (length(block_hash) = 32),
    tx_hash         BYTEA NOT NULL CHECK (length(tx_hash) = 32),
    log_index       INTEGER NOT NULL CHECK (log_index >= 0),
    block_number    BIGINT NOT NULL,
    block_timestamp TIMESTAMPTZ,
    tx_index        INTEGER,
    address         BYTEA NOT NULL CHECK (length(address) = 20),
    topic0          BYTEA,
    topic1          BYTEA,
    topic2          BYTEA,
    topic3          BYTEA,
    data            BYTEA NOT NULL,
    -- Event name for decoded logs (e.g. 'StreamLockCreated'); NULL for unknown topics.
    event           TEXT,
    -- 'decoded' | 'unknown' (topic not in the ABI) | 'quarantined' (known topic, failed to decode)
    decode_status   TEXT NOT NULL CHECK (decode_status IN ('decoded', 'unknown', 'quarantined')),
    decoded         JSONB,
    quarantine_reason TEXT,
    removed         BOOLEAN NOT NULL DEFAULT false,
    removed_at      TIMESTAMPTZ,
    inserted_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, block_hash, tx_hash, log_index)
);
CREATE INDEX evm_logs_chain_block ON evm_logs (chain, block_number);
CREATE INDEX evm_logs_chain_tx ON evm_logs (chain, tx_hash);
CREATE INDEX evm_logs_removed ON evm_logs (chain, removed_at) WHERE removed;

-- Every reorg detected, with its true depth (blocks replaced).
CREATE TABLE reorgs (
    id            BIGSERIAL PRIMARY KEY,
    chain         TEXT NOT NULL REFERENCES chains (name),
    fork_point    BIGINT NOT NULL,
    depth         BIGINT NOT NULL CHECK (depth >= 1),
    old_head      BIGINT NOT NULL,
    new_head      BIGINT NOT NULL,
    detected_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reorgs_chain ON reorgs (chain, detected_at);

-- Per-account TON cursor: the newest (lt, hash) whose transactions are committed.
CREATE TABLE ton_account_cursors (
    chain         TEXT NOT NULL REFERENCES chains (name),
    account       TEXT NOT NULL,
    role          TEXT NOT NULL,
    last_lt       NUMERIC(20, 0),
    last_hash     BYTEA CHECK (last_hash IS NULL OR length(last_hash) = 32),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, account)
);

-- Raw TON transactions of watched accounts, keyed by (account, lt, hash).
CREATE TABLE ton_transactions (
    chain         TEXT NOT NULL REFERENCES chains (name),
    account       TEXT NOT NULL,
    lt            NUMERIC(20, 0) NOT NULL,
    hash          BYTEA NOT NULL CHECK (length(hash) = 32),
    prev_lt       NUMERIC(20, 0),
    prev_hash     BYTEA,
    utime         TIMESTAMPTZ NOT NULL,
    -- Masterchain seqno at which chainsync first saw the transaction.
    mc_seqno_seen BIGINT NOT NULL,
    boc           BYTEA NOT NULL,
    decoded       JSONB NOT NULL,
    inserted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, account, lt, hash)
);

-- Tracked transfers. `identity` is the transfer's on-chain identity within (chain, kind), e.g.
-- '<tx_hash>:<n>' for the n-th log of that event in a transaction (stable when a reorg moves the
-- transaction to another block), '<tx_hash>' for a watched transaction, '<account>:<lt>' on TON.
CREATE TABLE transfers (
    id              BIGSERIAL PRIMARY KEY,
    chain           TEXT NOT NULL REFERENCES chains (name),
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
    token           BYTEA,
    from_address    TEXT,
    to_address      TEXT,
    amount          NUMERIC(78, 0),
    details         JSONB NOT NULL DEFAULT '{}'::jsonb,
    first_seen_at   TIMESTAMPTZ NOT NULL,
    included_at     TIMESTAMPTZ,
    confirmed_at    TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (chain, kind, identity)
);
CREATE INDEX transfers_open ON transfers (chain, status) WHERE status IN ('pending', 'confirming', 'reorged');
CREATE INDEX transfers_tx ON transfers (chain, tx_hash);

-- Every status transition of a transfer, with its reason and the block that caused it.
CREATE TABLE transfer_history (
    id            BIGSERIAL PRIMARY KEY,
    transfer_id   BIGINT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
    from_status   TEXT,
    to_status     TEXT NOT NULL,
    stuck         BOOLEAN NOT NULL,
    reason        TEXT NOT NULL,
    block_number  BIGINT,
    at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX transfer_history_transfer ON transfer_history (transfer_id, id);

-- Transactional outbox: one row per event to deliver (webhooks, NOTIFY), written in the same
-- transaction as the change it describes.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    chain           TEXT NOT NULL,
    topic           TEXT NOT NULL,
    transfer_id     BIGINT REFERENCES transfers (id) ON DELETE SET NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error_kind TEXT,
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Per-chain progress: what backends and SREs look at first.
CREATE TABLE chain_status (
    chain             TEXT PRIMARY KEY REFERENCES chains (name),
    head_block        BIGINT,
    indexed_block     BIGINT,
    confirmed_block   BIGINT,
    finalized_block   BIGINT,
    head_seen_at      TIMESTAMPTZ,
    stalled           BOOLEAN NOT NULL DEFAULT false,
    halted_reason     TEXT,
    last_reorg_at     TIMESTAMPTZ,
    last_reorg_depth  BIGINT,
    last_reorg_fork_point BIGINT,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
