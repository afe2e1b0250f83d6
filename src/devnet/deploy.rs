//! Deploying the test contracts in a fixed order.

use std::path::Path;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::sol_types::{SolCall, SolConstructor, SolEvent};
use serde::{Deserialize, Serialize};

use super::accounts::{dev_addresses, DEPLOYER, INITIAL_PRODUCER_OWNERS};
use super::bindings::{
    ERC1967Proxy, Factory, Producer, ProducerStorage, StreamLockManager, TestToken,
};
use super::error::{Error, Result};
use super::sender::{SentTx, TxSender};

/// Smallest stream the manager accepts, in token base units.
pub const MIN_STREAM_AMOUNT: u64 = 1_000;
/// Shortest stream the manager accepts, in seconds.
pub const MIN_STREAM_DURATION_SECS: u64 = 1;
/// Longest stream the manager accepts, in seconds (one year).
pub const MAX_STREAM_DURATION_SECS: u64 = 365 * 24 * 3600;
/// Whole tokens (18 decimals) minted to each dev account.
const MINTED_TOKENS_PER_ACCOUNT: u64 = 1_000_000_000;

/// Gas limits: generous fixed values, only the gas used is paid.
const DEPLOY_GAS: u64 = 6_000_000;
const ADMIN_CALL_GAS: u64 = 200_000;
const TOKEN_CALL_GAS: u64 = 120_000;
const NEW_PRODUCER_GAS: u64 = 600_000;
const ADD_PLAN_GAS: u64 = 300_000;

/// A producer created during deployment.
struct InitialProducer {
    name: &'static str,
    /// Whether the manager authorizes its clone to open customer-plan streams.
    authorized: bool,
    plans: &'static [InitialPlan],
}

/// A plan added by an initial producer.
struct InitialPlan {
    name: &'static str,
    plan_type: u8,
    price_tokens: u64,
    duration_secs: u64,
}

/// The initial producers, owned by accounts #1, #2 and #3.
///
/// The third one is deliberately left unauthorized: its customer plans are created without a
/// stream, and nothing on chain says so (the swallowed failure an indexer has to live with).
const INITIAL_PRODUCERS: [InitialProducer; 3] = [
    InitialProducer {
        name: "Aurora Streaming",
        authorized: true,
        plans: &[
            InitialPlan {
                name: "Aurora hourly",
                plan_type: 0,
                price_tokens: 36,
                duration_secs: 3_600,
            },
            InitialPlan {
                name: "Aurora minute",
                plan_type: 0,
                price_tokens: 3,
                duration_secs: 60,
            },
        ],
    },
    InitialProducer {
        name: "Borealis Data",
        authorized: true,
        plans: &[
            InitialPlan {
                name: "Borealis daily",
                plan_type: 1,
                price_tokens: 240,
                duration_secs: 86_400,
            },
            InitialPlan {
                name: "Borealis trial",
                plan_type: 0,
                price_tokens: 1,
                duration_secs: 30,
            },
        ],
    },
    InitialProducer {
        name: "Cirrus Compute",
        authorized: false,
        plans: &[InitialPlan {
            name: "Cirrus monthly",
            plan_type: 2,
            price_tokens: 900,
            duration_secs: 2_592_000,
        }],
    },
];

/// Where everything was deployed. Written as JSON by `chainsync devnet deploy --out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Chain id of the devnet.
    pub chain_id: u64,
    /// The ERC-20 the streams lock (`TestToken`).
    pub token: Address,
    /// The stream lock manager as users see it: the ERC-1967 proxy. Events come from here.
    pub manager: Address,
    /// The implementation the proxy pointed to after deployment (V1).
    pub manager_implementation: Address,
    /// The `ProducerStorage` registry (emits `LogProducer`).
    pub producer_storage: Address,
    /// The `Producer` implementation the clones delegate to.
    pub producer_implementation: Address,
    /// The `Factory` that creates producer clones.
    pub factory: Address,
    /// The producer clones created during deployment.
    pub producers: Vec<Address>,
    /// The account that deployed everything and owns the manager (anvil account #0).
    pub deployer: Address,
    /// Dev accounts that hold test tokens and approved the manager.
    pub funded_accounts: Vec<Address>,
    /// Latest block once deployment was complete.
    pub block_number_after: u64,
}

impl Deployment {
    /// Reads a deployment written by [`Deployment::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| Error::DeploymentFile {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|err| Error::DeploymentFile {
            path: path.to_path_buf(),
            detail: format!("not a deployment JSON: {err}"),
        })
    }

    /// Writes the deployment as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|err| Error::DeploymentFile {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
        text.push('\n');
        std::fs::write(path, text).map_err(|err| Error::DeploymentFile {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })
    }
}

/// Deploys the test contracts to the devnet at `rpc_url` and prepares the dev accounts.
///
/// Order (all from anvil account #0 unless said otherwise), so that a fresh anvil always yields
/// the same addresses:
/// 1. `TestToken`;
/// 2. the `StreamLockManager` implementation;
/// 3. an `ERC1967Proxy` to it, initialized in its constructor (emits `Upgraded`,
///    `OwnershipTransferred` twice, `Initialized(1)`);
/// 4. `ProducerStorage`, 5. the `Producer` implementation, 6. `Factory`, then
///    `ProducerStorage.setFactory`;
/// 7. accounts #1, #2 and #3 each create a producer clone through the Factory (`LogProducer`);
///    the manager authorizes the first two clones; each producer adds its plans (`LogAddPlan`);
/// 8. tokens are minted to accounts #0 to #9, which each approve the manager for any amount.
pub async fn deploy(rpc_url: &str) -> Result<Deployment> {
    let mut sender = TxSender::connect(rpc_url).await?;
    deploy_with(&mut sender).await
}

pub(crate) async fn deploy_with(sender: &mut TxSender) -> Result<Deployment> {
    let accounts = dev_addresses();
    let deployer = accounts[DEPLOYER];
    let first_nonce = sender
        .provider()
        .get_transaction_count(deployer)
        .await
        .map_err(|err| Error::rpc("eth_getTransactionCount", err))?;
    if first_nonce != 0 {
        tracing::warn!(
            nonce = first_nonce,
            "the deployer has sent transactions before: addresses will differ from a fresh devnet"
        );
    }

    let token = sender
        .deploy(
            deployer,
            TestToken::BYTECODE.clone(),
            DEPLOY_GAS,
            "TestToken",
        )
        .await?;
    let manager_implementation = sender
        .deploy(
            deployer,
            StreamLockManager::BYTECODE.clone(),
            DEPLOY_GAS,
            "StreamLockManager",
        )
        .await?;
    let initialize = StreamLockManager::initializeCall {
        owner_: deployer,
        minAmount: U256::from(MIN_STREAM_AMOUNT),
        minDuration: U256::from(MIN_STREAM_DURATION_SECS),
        maxDuration: U256::from(MAX_STREAM_DURATION_SECS),
    };
    let proxy_code = creation_code(
        &ERC1967Proxy::BYTECODE,
        ERC1967Proxy::constructorCall {
            implementation: manager_implementation,
            _data: initialize.abi_encode().into(),
        }
        .abi_encode(),
    );
    let manager = sender
        .deploy(deployer, proxy_code, DEPLOY_GAS, "ERC1967Proxy")
        .await?;
    let producer_storage = sender
        .deploy(
            deployer,
            ProducerStorage::BYTECODE.clone(),
            DEPLOY_GAS,
            "ProducerStorage",
        )
        .await?;
    let producer_implementation = sender
        .deploy(deployer, Producer::BYTECODE.clone(), DEPLOY_GAS, "Producer")
        .await?;
    let factory_code = creation_code(
        &Factory::BYTECODE,
        Factory::constructorCall {
            producerImplementation_: producer_implementation,
            producerStorage_: producer_storage,
            manager_: manager,
        }
        .abi_encode(),
    );
    let factory = sender
        .deploy(deployer, factory_code, DEPLOY_GAS, "Factory")
        .await?;
    let sent = sender
        .send_call(
            deployer,
            producer_storage,
            &ProducerStorage::setFactoryCall { factory_: factory },
            ADMIN_CALL_GAS,
            "ProducerStorage.setFactory",
            false,
        )
        .await?;
    sender.confirm(&sent).await?;

    let mut producers = Vec::new();
    for (owner_index, producer) in INITIAL_PRODUCER_OWNERS.iter().zip(INITIAL_PRODUCERS) {
        let owner = accounts[*owner_index];
        let clone = register_producer(sender, factory, owner, producer.name).await?;
        if producer.authorized {
            let sent = sender
                .send_call(
                    deployer,
                    manager,
                    &StreamLockManager::setAuthorizedCallerCall {
                        caller: clone,
                        authorized: true,
                    },
                    ADMIN_CALL_GAS,
                    "StreamLockManager.setAuthorizedCaller",
                    false,
                )
                .await?;
            sender.confirm(&sent).await?;
        }
        for plan in producer.plans {
            let sent = sender
                .send_call(
                    owner,
                    clone,
                    &Producer::addPlanCall {
                        planName: plan.name.to_string(),
                        planType: plan.plan_type,
                        token,
                        price: whole_tokens(plan.price_tokens),
                        duration: U256::from(plan.duration_secs),
                    },
                    ADD_PLAN_GAS,
                    "Producer.addPlan",
                    false,
                )
                .await?;
            sender.confirm(&sent).await?;
        }
        producers.push(clone);
    }

    // Funding: independent transactions, sent together and then awaited.
    let mut funding = Vec::new();
    for account in &accounts {
        funding.push(
            sender
                .send_call(
                    deployer,
                    token,
                    &TestToken::mintCall {
                        to: *account,
                        amount: whole_tokens(MINTED_TOKENS_PER_ACCOUNT),
                    },
                    TOKEN_CALL_GAS,
                    "TestToken.mint",
                    false,
                )
                .await?,
        );
    }
    for account in &accounts {
        funding.push(
            sender
                .send_call(
                    *account,
                    token,
                    &TestToken::approveCall {
                        spender: manager,
                        value: U256::MAX,
                    },
                    TOKEN_CALL_GAS,
                    "TestToken.approve",
                    false,
                )
                .await?,
        );
    }
    confirm_all(sender, &funding).await?;

    let block_number_after = sender
        .provider()
        .get_block_number()
        .await
        .map_err(|err| Error::rpc("eth_blockNumber", err))?;
    let deployment = Deployment {
        chain_id: sender.chain_id(),
        token,
        manager,
        manager_implementation,
        producer_storage,
        producer_implementation,
        factory,
        producers,
        deployer,
        funded_accounts: accounts,
        block_number_after,
    };
    tracing::info!(
        manager = %deployment.manager,
        producer_storage = %deployment.producer_storage,
        block = block_number_after,
        "devnet contracts deployed"
    );
    Ok(deployment)
}

/// Creates a producer clone owned by `owner` through the Factory and returns its address, read
/// from the registry's `LogProducer`.
pub(crate) async fn register_producer(
    sender: &mut TxSender,
    factory: Address,
    owner: Address,
    name: &str,
) -> Result<Address> {
    let sent = sender
        .send_call(
            owner,
            factory,
            &Factory::newBcontractCall {
                name: name.to_string(),
            },
            NEW_PRODUCER_GAS,
            "Factory.newBcontract",
            false,
        )
        .await?;
    let receipt = sender.confirm(&sent).await?;
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| ProducerStorage::LogProducer::decode_log(&log.inner).ok())
        .map(|event| event.data.cloneAddress)
        .ok_or_else(|| {
            Error::Unexpected(format!(
                "Factory.newBcontract in {} emitted no LogProducer",
                sent.tx_hash
            ))
        })
}

async fn confirm_all(sender: &TxSender, sent: &[SentTx]) -> Result<()> {
    for tx in sent {
        sender.confirm(tx).await?;
    }
    Ok(())
}

/// `tokens` whole tokens of an 18-decimal ERC-20, in base units.
pub(crate) fn whole_tokens(tokens: u64) -> U256 {
    U256::from(tokens) * U256::from(10u64).pow(U256::from(18u64))
}

fn creation_code(bytecode: &Bytes, constructor_args: Vec<u8>) -> Bytes {
    let mut code = bytecode.to_vec();
    code.extend_from_slice(&constructor_args);
    code.into()
}
