//! A loopback TON liteserver for tests and `make run`: it speaks the liteserver protocol (ADNL
//! over TCP, the server side of the same crate family as chainsync's lite client) and serves
//! recorded transactions instead of a blockchain.
//!
//! What it serves comes from `tests/fixtures/ton/`: the 16-transaction mainnet account chain
//! (released at masterchain block 1) and the `@ton/sandbox` scenario files, whose steps are
//! released in file order, [`ServeOptions::steps_per_block`] steps per masterchain block. The
//! masterchain advances with wall-clock time: seqno = 1 + elapsed / block interval since the
//! genesis instant, so two servers given the same genesis serve the same chain (tests kill one
//! and expect chainsync to carry on with the other).
//!
//! Answers: `getMasterchainInfo`, `lookupBlock` (masterchain), `getAccountState` (the account
//! state plus a state proof whose shard state holds the account's `ShardAccount`, so the last
//! transaction hash is read as from a real liteserver), `getTransactions` (paging backwards by
//! `(lt, hash)`, "lt not in db" and hash mismatch as a real liteserver words them) and
//! `runSmcMethod` for jetton masters' `get_wallet_address` (answered from the scenario files).
//! The shard state of a proof holds only the requested account (a real one holds a pruned tree
//! of all accounts); nothing is signed or proven: the lite client does not check proofs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adnl::crypto::{KeyPair, SecretKey};
use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use everscale_types::boc::ser::BocHeader;
use everscale_types::cell::CellBuilder;
use everscale_types::merkle::MerkleProof;
use everscale_types::models::{
    DepthBalanceInfo, Lazy, OptionalAccount, ShardAccount, ShardAccounts, ShardStateUnsplit,
};
use everscale_types::prelude::{Boc, Cell, CellFamily, HashBytes};
use serde::Deserialize;
use ton::block_tlb::{TVMStack, TVMStackValue};
use ton::contracts::TVMGetMethodID;
use ton::ton_core::traits::tlb::TLB;
use ton::ton_core::types::TonAddress;
use ton_liteapi::layers::{UnwrapMessagesLayer, WrapErrorLayer};
use ton_liteapi::tl::common::{BlockIdExt, Int256, ZeroStateIdExt};
use ton_liteapi::tl::request::{Request, WrappedRequest};
use ton_liteapi::tl::response::{
    AccountState, BlockHeader, Error as LiteErrorResponse, MasterchainInfo, Response,
    RunMethodResult, TransactionList,
};
use ton_liteapi::types::LiteError;
use tower::{make::Shared, ServiceBuilder};

/// The liteserver key seed of the devnet: 32 bytes of 0x2a. Its public key is in
/// `config/ton-devnet.json`.
pub const DEVNET_KEY_SEED: [u8; 32] = [0x2a; 32];
/// Liteserver error code of "not ready" (block not yet known, server out of sync).
pub const ERROR_NOT_READY: i32 = 651;
/// The shard of basechain blocks named in answers.
const BASECHAIN_SHARD: u64 = 0x8000_0000_0000_0000;
/// The masterchain shard.
const MASTERCHAIN_SHARD: u64 = 0x8000_0000_0000_0000;
/// Transactions answered per `getTransactions` at most (as real liteservers).
const MAX_PAGE: usize = 16;

/// How to run the test liteserver.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The fixtures folder (`tests/fixtures/ton`).
    pub fixtures: PathBuf,
    /// Time between two masterchain blocks.
    pub block_interval: Duration,
    /// Scenario steps released per masterchain block.
    pub steps_per_block: usize,
    /// The instant of masterchain block 1 (Unix milliseconds); now when not given.
    pub genesis_unix_ms: Option<u64>,
    /// Answer every request with "not ready" (a liteserver out of sync).
    pub not_ready: bool,
    /// Accounts whose transactions are never served (an outgoing message that never arrives).
    pub withhold: Vec<String>,
    /// Extra scenario files (same format as the sandbox ones), e.g. for benchmarks.
    pub extra_scenarios: Vec<PathBuf>,
    /// Serve only these sandbox scenarios (file stems); all when empty.
    pub only: Vec<String>,
    /// Answer "lt not in db" for transactions below this lt, like a liteserver that keeps only
    /// recent history (not an archival one).
    pub prune_below_lt: Option<u64>,
    /// Leave the second transaction out of every transaction list (a faulty liteserver).
    pub broken_lists: bool,
}

#[derive(Deserialize)]
struct MainnetFile {
    transactions: Vec<MainnetTx>,
}

#[derive(Deserialize)]
struct MainnetTx {
    boc_base64: String,
    expected: MainnetExpected,
}

#[derive(Deserialize)]
struct MainnetExpected {
    account: String,
}

#[derive(Deserialize)]
struct ScenarioFile {
    steps: Vec<ScenarioStep>,
    #[serde(default)]
    get_methods: Vec<GetMethod>,
}

#[derive(Deserialize)]
struct ScenarioStep {
    transactions: Vec<ScenarioTx>,
    #[serde(default)]
    shard_accounts: Vec<ScenarioShardAccount>,
}

#[derive(Deserialize)]
struct ScenarioTx {
    account: String,
    boc_base64: String,
}

#[derive(Deserialize)]
struct ScenarioShardAccount {
    address: String,
    boc_base64: String,
}

#[derive(Deserialize)]
struct GetMethod {
    account: String,
    method: String,
    args: Vec<StackItem>,
    result: Vec<StackItem>,
}

#[derive(Deserialize)]
struct StackItem {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// One transaction of the served chain.
struct Tx {
    lt: u64,
    hash: [u8; 32],
    cell: Cell,
    /// Masterchain seqno from which it is served.
    released_at: u32,
}

/// One account's state as of some masterchain block.
struct StateAt {
    released_at: u32,
    shard_account: ShardAccount,
}

/// Everything served, indexed by account (`wc:hex`).
#[derive(Default)]
struct World {
    transactions: HashMap<(i32, [u8; 32]), Vec<Tx>>,
    states: HashMap<(i32, [u8; 32]), Vec<StateAt>>,
    wallet_addresses: HashMap<([u8; 32], [u8; 32]), TonAddress>,
    last_release: u32,
}

fn parse_address(text: &str) -> anyhow::Result<(i32, [u8; 32])> {
    let address = text.parse::<TonAddress>()?;
    Ok((address.workchain, *address.hash.as_slice_sized()))
}

/// Reads the transactions' lt from the root cell: `transaction$0111 account:bits256 lt:uint64`.
fn tx_lt(cell: &Cell) -> anyhow::Result<u64> {
    let mut slice = cell.as_slice()?;
    let tag = slice.load_small_uint(4)?;
    anyhow::ensure!(tag == 0b0111, "not a transaction cell (tag {tag:#x})");
    slice.skip_first(256, 0)?;
    Ok(slice.load_u64()?)
}

impl World {
    fn load(options: &ServeOptions) -> anyhow::Result<Self> {
        let mut world = Self::default();
        let mainnet = options.fixtures.join("mainnet/tongo_account_chain.json");
        let file: MainnetFile = serde_json::from_slice(
            &std::fs::read(&mainnet).with_context(|| format!("reading {}", mainnet.display()))?,
        )
        .with_context(|| format!("parsing {}", mainnet.display()))?;
        for tx in file.transactions {
            world.add_tx(&tx.expected.account, &tx.boc_base64, 1)?;
        }
        // The recorded chain has no account state: serve one with only the last transaction.
        for (account, txs) in &world.transactions {
            let Some(last) = txs.iter().max_by_key(|tx| tx.lt) else {
                continue;
            };
            let shard_account = ShardAccount {
                account: Lazy::new(&OptionalAccount::EMPTY)?,
                last_trans_hash: HashBytes(last.hash),
                last_trans_lt: last.lt,
            };
            world.states.insert(
                *account,
                vec![StateAt {
                    released_at: 1,
                    shard_account,
                }],
            );
        }
        let mut scenario_files = Vec::new();
        let sandbox = options.fixtures.join("sandbox");
        if sandbox.is_dir() {
            for entry in std::fs::read_dir(&sandbox)? {
                let path = entry?.path();
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                let wanted = options.only.is_empty() || options.only.iter().any(|o| o == stem);
                if path.extension().is_some_and(|e| e == "json") && wanted {
                    scenario_files.push(path);
                }
            }
        }
        scenario_files.sort();
        scenario_files.extend(options.extra_scenarios.iter().cloned());
        let mut step_index = 0usize;
        for path in scenario_files {
            let file: ScenarioFile = serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))?;
            for step in file.steps {
                let released_at = 2 + u32::try_from(step_index / options.steps_per_block.max(1))?;
                step_index += 1;
                for tx in &step.transactions {
                    world
                        .add_tx(&tx.account, &tx.boc_base64, released_at)
                        .with_context(|| format!("{}: transaction", path.display()))?;
                }
                for state in &step.shard_accounts {
                    let cell = Boc::decode_base64(&state.boc_base64)?;
                    let shard_account: ShardAccount = cell.parse()?;
                    world
                        .states
                        .entry(parse_address(&state.address)?)
                        .or_default()
                        .push(StateAt {
                            released_at,
                            shard_account,
                        });
                }
                world.last_release = world.last_release.max(released_at);
            }
            for method in file.get_methods {
                if method.method != "get_wallet_address" {
                    continue;
                }
                let (Some(arg), Some(result)) = (method.args.first(), method.result.first()) else {
                    continue;
                };
                anyhow::ensure!(
                    arg.kind == "address" && result.kind == "address",
                    "{}: get_wallet_address with non-address stack items",
                    path.display()
                );
                let master = parse_address(&method.account)?.1;
                let owner = parse_address(&arg.value)?.1;
                world
                    .wallet_addresses
                    .insert((master, owner), result.value.parse::<TonAddress>()?);
            }
        }
        for txs in world.transactions.values_mut() {
            txs.sort_by_key(|tx| tx.lt);
        }
        for account in &options.withhold {
            let key = parse_address(account)?;
            world.transactions.remove(&key);
            world.states.remove(&key);
        }
        Ok(world)
    }

    fn add_tx(&mut self, account: &str, boc_base64: &str, released_at: u32) -> anyhow::Result<()> {
        let cell = Boc::decode_base64(boc_base64)?;
        let lt = tx_lt(&cell)?;
        let hash = cell.repr_hash().0;
        self.transactions
            .entry(parse_address(account)?)
            .or_default()
            .push(Tx {
                lt,
                hash,
                cell,
                released_at,
            });
        Ok(())
    }
}

/// The chain clock and the served world.
struct Liteserver {
    world: World,
    genesis_ms: u64,
    block_interval: Duration,
    not_ready: bool,
    prune_below_lt: u64,
    broken_lists: bool,
    zero_state: [u8; 32],
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hash_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut builder = CellBuilder::new();
    for part in parts {
        let _ = builder.store_raw(part, (part.len() * 8).min(1023) as u16);
    }
    builder
        .build()
        .map(|cell| cell.repr_hash().0)
        .unwrap_or([0; 32])
}

fn error(code: i32, message: impl Into<String>) -> Response {
    Response::Error(LiteErrorResponse {
        code,
        message: ton_liteapi::tl::common::String::new(message.into()),
    })
}

impl Liteserver {
    fn seqno(&self) -> u32 {
        let elapsed = now_ms().saturating_sub(self.genesis_ms);
        1 + u32::try_from(elapsed / self.block_interval.as_millis().max(1) as u64)
            .unwrap_or(u32::MAX - 1)
    }

    fn block(&self, workchain: i32, shard: u64, seqno: u32) -> BlockIdExt {
        let seq = seqno.to_be_bytes();
        let wc = workchain.to_be_bytes();
        BlockIdExt {
            workchain,
            shard,
            seqno,
            root_hash: Int256(hash_of(&[b"root", &wc, &seq])),
            file_hash: Int256(hash_of(&[b"file", &wc, &seq])),
        }
    }

    fn answer(&self, request: WrappedRequest) -> Response {
        if self.not_ready {
            return error(
                ERROR_NOT_READY,
                "LITE_SERVER_NOTREADY: server is out of sync",
            );
        }
        let head = self.seqno();
        if let Some(wait) = &request.wait_masterchain_seqno {
            if wait.seqno > head {
                return error(
                    ERROR_NOT_READY,
                    format!("block is not in db: masterchain seqno {}", wait.seqno),
                );
            }
        }
        match request.request {
            Request::GetMasterchainInfo => Response::MasterchainInfo(MasterchainInfo {
                last: self.block(-1, MASTERCHAIN_SHARD, head),
                state_root_hash: Int256(hash_of(&[b"state", &head.to_be_bytes()])),
                init: ZeroStateIdExt {
                    workchain: -1,
                    root_hash: Int256(self.zero_state),
                    file_hash: Int256(hash_of(&[b"zero-file", &self.zero_state])),
                },
            }),
            Request::LookupBlock(lookup) => {
                if lookup.id.seqno > head {
                    return error(ERROR_NOT_READY, "block is not in db");
                }
                Response::BlockHeader(BlockHeader {
                    id: self.block(lookup.id.workchain, lookup.id.shard, lookup.id.seqno),
                    mode: (),
                    with_state_update: None,
                    with_value_flow: None,
                    with_extra: None,
                    with_shard_hashes: None,
                    with_prev_blk_signatures: None,
                    header_proof: Vec::new(),
                })
            }
            Request::GetAccountState(query) => {
                if query.id.seqno > head {
                    return error(ERROR_NOT_READY, "block is not in db");
                }
                match self.account_state(query.account.workchain, query.account.id.0, query.id) {
                    Ok(state) => Response::AccountState(state),
                    Err(e) => error(500, format!("cannot build account state: {e}")),
                }
            }
            Request::GetTransactions(query) => self.transactions(
                (query.account.workchain, query.account.id.0),
                query.lt,
                query.hash.0,
                query.count as usize,
                head,
            ),
            Request::RunSmcMethod(query) => self.run_method(&query, head),
            other => error(
                500,
                format!("not implemented by the test liteserver: {other:?}")
                    .chars()
                    .take(200)
                    .collect::<String>(),
            ),
        }
    }

    fn account_state(
        &self,
        workchain: i32,
        id: [u8; 32],
        block: BlockIdExt,
    ) -> anyhow::Result<AccountState> {
        let shard_account = self.world.states.get(&(workchain, id)).and_then(|states| {
            states
                .iter()
                .rev()
                .find(|s| s.released_at <= block.seqno)
                .map(|s| s.shard_account.clone())
        });
        let mut accounts = ShardAccounts::new();
        let state_boc = match &shard_account {
            Some(shard_account) => {
                let balance = shard_account
                    .load_account()?
                    .map(|account| account.balance)
                    .unwrap_or_default();
                accounts.set(
                    HashBytes(id),
                    DepthBalanceInfo {
                        split_depth: 0,
                        balance,
                    },
                    shard_account.clone(),
                )?;
                Boc::encode(shard_account.account.inner())
            }
            None => Boc::encode(CellBuilder::build_from(OptionalAccount::EMPTY)?),
        };
        let state = ShardStateUnsplit {
            seqno: block.seqno,
            accounts: Lazy::new(&accounts)?,
            ..Default::default()
        };
        let state_cell = CellBuilder::build_from(&state)?;
        let proof = MerkleProof {
            hash: *state_cell.repr_hash(),
            depth: state_cell.repr_depth(),
            cell: state_cell,
        };
        let proof_cell = CellBuilder::build_from(&proof)?;
        let block_proof = Cell::empty_cell();
        let shard_block = self.block(workchain, BASECHAIN_SHARD, block.seqno);
        Ok(AccountState {
            id: block,
            shardblk: shard_block,
            shard_proof: Vec::new(),
            proof: Boc::encode_pair((block_proof, proof_cell)),
            state: state_boc,
        })
    }

    fn transactions(
        &self,
        account: (i32, [u8; 32]),
        lt: u64,
        hash: [u8; 32],
        count: usize,
        head: u32,
    ) -> Response {
        let visible: Vec<&Tx> = self
            .world
            .transactions
            .get(&account)
            .map(|txs| {
                txs.iter()
                    .filter(|tx| tx.released_at <= head && tx.lt >= self.prune_below_lt)
                    .collect()
            })
            .unwrap_or_default();
        let Some(position) = visible.iter().position(|tx| tx.lt == lt) else {
            return error(
                -400,
                format!("LITE_SERVER_UNKNOWN: cannot locate transaction: lt not in db (lt {lt})"),
            );
        };
        if visible[position].hash != hash {
            return error(-400, format!("transaction hash mismatch for lt {lt}"));
        }
        let take = count.clamp(1, MAX_PAGE);
        let mut page: Vec<&Tx> = visible[..=position]
            .iter()
            .rev()
            .take(take)
            .copied()
            .collect();
        if self.broken_lists && page.len() > 1 {
            page.remove(1);
        }
        let mut encoder =
            BocHeader::<std::collections::hash_map::RandomState>::with_capacity(page.len());
        for tx in &page {
            encoder.add_root(tx.cell.as_ref());
        }
        let mut transactions = Vec::new();
        encoder.encode(&mut transactions);
        Response::TransactionList(TransactionList {
            ids: page
                .iter()
                .map(|tx| self.block(account.0, BASECHAIN_SHARD, tx.released_at))
                .collect(),
            transactions,
        })
    }

    fn run_method(&self, query: &ton_liteapi::tl::request::RunSmcMethod, head: u32) -> Response {
        if query.id.seqno > head {
            return error(ERROR_NOT_READY, "block is not in db");
        }
        let wanted = TVMGetMethodID::from("get_wallet_address").to_id() as u64;
        if query.method_id != wanted {
            return error(500, format!("unknown get-method id {}", query.method_id));
        }
        let owner = TVMStack::from_boc(query.params.clone())
            .ok()
            .and_then(|mut stack| stack.pop_checked().ok())
            .and_then(|value| match value {
                TVMStackValue::CellSlice(slice) => slice.to_cell().ok(),
                _ => None,
            })
            .and_then(|cell| TonAddress::from_cell(&cell).ok());
        let Some(owner) = owner else {
            return error(
                500,
                "get_wallet_address: expected an address slice argument",
            );
        };
        let master = query.account.id.0;
        let Some(wallet) = self
            .world
            .wallet_addresses
            .get(&(master, *owner.hash.as_slice_sized()))
        else {
            return error(
                500,
                format!("no get_wallet_address answer recorded for owner {owner}"),
            );
        };
        let mut stack = TVMStack::default();
        match wallet.to_cell() {
            Ok(cell) => stack.push_cell_slice(cell),
            Err(e) => return error(500, format!("address cell: {e}")),
        }
        match stack.to_boc() {
            Ok(result) => Response::RunMethodResult(RunMethodResult {
                mode: (),
                id: query.id.clone(),
                shardblk: self.block(0, BASECHAIN_SHARD, query.id.seqno),
                shard_proof: None,
                proof: None,
                state_proof: None,
                init_c7: None,
                lib_extras: None,
                exit_code: 0,
                result: Some(result),
            }),
            Err(e) => error(500, format!("result stack: {e}")),
        }
    }
}

/// The public key clients configure for a liteserver started with `seed`, in base64.
pub fn public_key_base64(seed: [u8; 32]) -> String {
    let keypair = KeyPair::from(&SecretKey::from_bytes(seed));
    STANDARD.encode(keypair.public_key.as_bytes())
}

/// Loads the fixtures and serves them until the process ends.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let world = World::load(&options)?;
    let genesis_ms = options.genesis_unix_ms.unwrap_or_else(now_ms);
    let accounts = world.transactions.len();
    let transactions: usize = world.transactions.values().map(Vec::len).sum();
    let last_release = world.last_release;
    let server = Arc::new(Liteserver {
        world,
        genesis_ms,
        block_interval: options.block_interval,
        not_ready: options.not_ready,
        prune_below_lt: options.prune_below_lt.unwrap_or(0),
        broken_lists: options.broken_lists,
        zero_state: hash_of(&[b"chainsync test liteserver zero state"]),
    });
    tracing::info!(
        listen = %options.listen,
        accounts,
        transactions,
        everything_released_at_seqno = last_release,
        block_interval_ms = options.block_interval.as_millis() as u64,
        public_key = %public_key_base64(DEVNET_KEY_SEED),
        not_ready = options.not_ready,
        broken_lists = options.broken_lists,
        "test liteserver ready"
    );
    let keypair = KeyPair::from(&SecretKey::from_bytes(DEVNET_KEY_SEED));
    let handler = move |request: WrappedRequest| {
        let server = Arc::clone(&server);
        async move { Ok::<Response, LiteError>(server.answer(request)) }
    };
    let service = ServiceBuilder::new()
        .buffer(256)
        .layer(UnwrapMessagesLayer)
        .layer(WrapErrorLayer)
        .service_fn(handler);
    ton_liteapi::server::serve(&options.listen, keypair, Shared::new(service))
        .await
        .map_err(|e| anyhow::anyhow!("test liteserver on {}: {e}", options.listen))
}

/// The fixtures folder of this repository, for tools run from the repository root.
pub fn default_fixtures() -> PathBuf {
    Path::new("tests/fixtures/ton").to_path_buf()
}
