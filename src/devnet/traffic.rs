//! The traffic generator: a seeded, weighted mix of everything users do with the stream
//! contracts, including what an indexer finds hard (lockId collisions, reverted transactions,
//! pauses, an upgrade, producers appearing at run time).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use alloy::network::ReceiptResponse;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::{SolCall, SolEvent};
use rand::distributions::WeightedIndex;
use rand::prelude::Distribution;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::accounts::{dev_addresses, CUSTOMERS, DEPLOYER};
use super::bindings::{
    Factory, IStreamLockManager, Producer, ProducerStorage, StreamLockManager, StreamLockManagerV2,
};
use super::deploy::{whole_tokens, Deployment};
use super::error::{Error, Result};
use super::sender::{SentTx, TxSender};

/// Gas limits. They are fixed (never estimated) so that transactions meant to revert are mined;
/// only the gas used is paid.
const CREATE_GAS: u64 = 500_000;
/// Per item of `batchCreateStreams`: a fresh stream record writes about a dozen slots, about
/// 300k gas in all.
const BATCH_ITEM_GAS: u64 = 340_000;
const BATCH_BASE_GAS: u64 = 80_000;
const SETTLE_GAS: u64 = 250_000;
const CLAIM_BASE_GAS: u64 = 150_000;
/// Per open stream of the claiming recipient; settling one costs about 40k gas.
const CLAIM_PER_STREAM_GAS: u64 = 70_000;
const POOL_GAS: u64 = 500_000;
const ADMIN_GAS: u64 = 200_000;
const UPGRADE_DEPLOY_GAS: u64 = 6_000_000;
const NEW_PRODUCER_GAS: u64 = 600_000;
const PLAN_GAS: u64 = 300_000;
const SUBSCRIBE_GAS: u64 = 800_000;
const VALIDATE_GAS: u64 = 400_000;
const REVERT_GAS: u64 = 300_000;

/// The clock is never moved forward by more than this to make one stream settleable.
const MAX_WARP_FOR_SETTLE_SECS: u64 = 3_600;
/// Settled lock ids remembered for the "settle an inactive stream" revert.
const CLOSED_MEMORY: usize = 1_024;
/// Progress is logged every this many steps.
const PROGRESS_EVERY: u64 = 50;

/// Event generation: items per `batchCreateStreams`, batches per customer per round, and how
/// far the clock jumps between rounds (every stream of a round expires before the next one).
const FLOOD_BATCH_ITEMS: usize = 60;
const FLOOD_BATCHES_PER_CUSTOMER: usize = 1;
const FLOOD_WARP_SECS: u64 = 40;
/// Ordinary mixed steps per event-generation round, so that every event kind keeps appearing.
const FLOOD_MIXED_STEPS_PER_ROUND: usize = 4;

/// One kind of thing the generator does in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `createStreamLock` by a customer towards a producer (account or clone).
    CreateStream,
    /// `batchCreateStreams` with 2 to 8 items.
    BatchCreate,
    /// Two identical creations in one block: either one batch with two identical items or two
    /// identical transactions mined together (automine paused, then `evm_mine`). Both produce
    /// the same lockId; the second overwrites the first.
    IdenticalCreates,
    /// `cancelStream` by the stream's user (trigger UserCancellation).
    CancelStream,
    /// `settleStream` before the end: by the recipient (ProducerClaim) or the user.
    SettleEarly,
    /// `settleStream` by a third party once the end time passed (AutoExpiration); moves the
    /// clock forward if needed.
    SettleExpired,
    /// `claimStreamsByProducer`, directly or through a Producer clone; sometimes by an account
    /// with no streams at all (count 0).
    ProducerClaim,
    /// `emergencyWithdraw` by the stream's user.
    EmergencyWithdraw,
    /// `createUsagePool`: prepaid usages.
    CreateUsagePool,
    /// `consumeUsageFromPool` (PartialClaim).
    ConsumeUsage,
    /// `pause`, a creation that reverts, a cancellation that still works, `unpause`.
    PauseCycle,
    /// Deploys `StreamLockManagerV2` and upgrades the proxy to it (once per run).
    Upgrade,
    /// A new producer clone through the Factory (LogProducer), usually authorized, with a plan.
    RegisterProducer,
    /// `Producer.addPlan` (LogAddPlan).
    AddPlan,
    /// `Producer.addCustomerPlanWithStream`: a customer plan and, if the manager accepts, its
    /// stream (CustomerPlanStreamCreated, CustomerPlanWithStreamCreated).
    SubscribeCustomerPlan,
    /// `Producer.validateUsage` (StreamUsageValidated, StreamUsageRecorded or a ConsumerUsage
    /// settlement).
    ValidateUsage,
    /// A transaction that reverts on purpose (settling an inactive stream, cancelling someone
    /// else's stream, invalid parameters); it is mined with status 0.
    RevertingCall,
    /// `evm_increaseTime` and `evm_mine`: time passes, streams accrue and expire.
    TimeWarp,
}

impl Operation {
    /// Stable name, for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateStream => "create_stream",
            Self::BatchCreate => "batch_create",
            Self::IdenticalCreates => "identical_creates",
            Self::CancelStream => "cancel_stream",
            Self::SettleEarly => "settle_early",
            Self::SettleExpired => "settle_expired",
            Self::ProducerClaim => "producer_claim",
            Self::EmergencyWithdraw => "emergency_withdraw",
            Self::CreateUsagePool => "create_usage_pool",
            Self::ConsumeUsage => "consume_usage",
            Self::PauseCycle => "pause_cycle",
            Self::Upgrade => "upgrade",
            Self::RegisterProducer => "register_producer",
            Self::AddPlan => "add_plan",
            Self::SubscribeCustomerPlan => "subscribe_customer_plan",
            Self::ValidateUsage => "validate_usage",
            Self::RevertingCall => "reverting_call",
            Self::TimeWarp => "time_warp",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first steps of every run go through these once, in this order, so that every event kind
/// appears early; random weighted steps follow.
const WARM_UP: [Operation; 17] = [
    Operation::CreateStream,
    Operation::BatchCreate,
    Operation::IdenticalCreates,
    Operation::CreateUsagePool,
    Operation::ConsumeUsage,
    Operation::SubscribeCustomerPlan,
    Operation::ValidateUsage,
    Operation::CancelStream,
    Operation::SettleEarly,
    Operation::SettleExpired,
    Operation::ProducerClaim,
    Operation::EmergencyWithdraw,
    Operation::PauseCycle,
    Operation::RegisterProducer,
    Operation::AddPlan,
    Operation::RevertingCall,
    Operation::TimeWarp,
];

/// Relative frequency of each operation after the warm-up. `Upgrade` is not drawn: it happens
/// once, at a step chosen from the seed.
const WEIGHTS: [(Operation, u32); 17] = [
    (Operation::CreateStream, 20),
    (Operation::BatchCreate, 8),
    (Operation::IdenticalCreates, 2),
    (Operation::CancelStream, 8),
    (Operation::SettleEarly, 5),
    (Operation::SettleExpired, 6),
    (Operation::ProducerClaim, 5),
    (Operation::EmergencyWithdraw, 3),
    (Operation::CreateUsagePool, 4),
    (Operation::ConsumeUsage, 7),
    (Operation::PauseCycle, 2),
    (Operation::RegisterProducer, 1),
    (Operation::AddPlan, 2),
    (Operation::SubscribeCustomerPlan, 7),
    (Operation::ValidateUsage, 5),
    (Operation::RevertingCall, 3),
    (Operation::TimeWarp, 3),
];

/// The upgrade happens at a step in `WARM_UP.len() .. WARM_UP.len() + UPGRADE_WINDOW`.
const UPGRADE_WINDOW: u64 = 60;

/// What became of one transaction of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// Transaction hash.
    pub tx_hash: B256,
    /// What it called (e.g. `StreamLockManager.cancelStream`).
    pub label: &'static str,
    /// Receipt status.
    pub succeeded: bool,
    /// Whether it was sent to revert.
    pub expected_revert: bool,
}

/// The result of one [`Traffic::step`].
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Step number, from 0.
    pub step: u64,
    /// The operation performed (a fallback when the drawn one had nothing to act on, e.g. a
    /// cancellation with no open stream becomes a creation).
    pub operation: Operation,
    /// Every transaction sent, in order.
    pub transactions: Vec<TxOutcome>,
    /// Logs emitted by the manager, the registry and the producer clones.
    pub contract_logs: usize,
}

impl StepReport {
    /// Transactions that reverted although they should not have.
    pub fn unexpected_reverts(&self) -> usize {
        self.transactions
            .iter()
            .filter(|tx| tx.succeeded == tx.expected_revert)
            .count()
    }
}

/// Running totals of a [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// Steps performed.
    pub steps: u64,
    /// Transactions mined.
    pub transactions: u64,
    /// Of which reverted.
    pub reverted: u64,
    /// Of which reverted without being meant to.
    pub unexpected_reverts: u64,
    /// Logs emitted by the manager, the registry and the producer clones.
    pub contract_logs: u64,
}

/// A stream the generator believes is active.
#[derive(Debug, Clone)]
struct OpenStream {
    lock_id: B256,
    user: Address,
    recipient: Address,
    /// Remaining usages for usage pools, `None` for time streams.
    usages_left: Option<u64>,
}

/// Open streams in creation order (random picks must not depend on hash order), with an index.
#[derive(Debug, Default)]
struct OpenStreams {
    list: Vec<OpenStream>,
    position: HashMap<B256, usize>,
}

impl OpenStreams {
    fn insert(&mut self, stream: OpenStream) {
        match self.position.get(&stream.lock_id) {
            // A lockId collision: the record was overwritten on chain, and so is ours.
            Some(&index) => self.list[index] = stream,
            None => {
                self.position.insert(stream.lock_id, self.list.len());
                self.list.push(stream);
            }
        }
    }

    fn remove(&mut self, lock_id: &B256) -> Option<OpenStream> {
        let index = self.position.remove(lock_id)?;
        let removed = self.list.swap_remove(index);
        if let Some(moved) = self.list.get(index) {
            self.position.insert(moved.lock_id, index);
        }
        Some(removed)
    }

    fn get_mut(&mut self, lock_id: &B256) -> Option<&mut OpenStream> {
        let index = *self.position.get(lock_id)?;
        self.list.get_mut(index)
    }

    fn pick(&self, rng: &mut StdRng, filter: impl Fn(&OpenStream) -> bool) -> Option<OpenStream> {
        let candidates: Vec<&OpenStream> = self.list.iter().filter(|s| filter(s)).collect();
        candidates.choose(rng).map(|s| (*s).clone())
    }
}

/// A producer: its clone, the account owning it, and its plan ids.
#[derive(Debug, Clone)]
struct ProducerState {
    clone: Address,
    owner: Address,
    plans: Vec<U256>,
}

/// A mined transaction of the current step, with the lock ids it created.
struct Mined {
    sent: SentTx,
    receipt: TransactionReceipt,
    created: Vec<B256>,
}

/// Drives a deployed devnet with a seeded, weighted mix of operations.
///
/// Operations and their parameters follow from the seed and from what the chain reports back.
/// anvil stamps blocks with the wall clock, so two runs with one seed on fresh devnets match
/// except where timing matters (whether a stream has expired when it is picked, for example).
pub struct Traffic {
    sender: TxSender,
    deployment: Deployment,
    rng: StdRng,
    seed: u64,
    accounts: Vec<Address>,
    producers: Vec<ProducerState>,
    open: OpenStreams,
    closed: Vec<B256>,
    customer_plans: Vec<(Address, U256)>,
    upgrade_at: u64,
    upgraded: bool,
    next_step: u64,
    totals: TrafficTotals,
    pending: Vec<SentTx>,
}

impl Traffic {
    /// Connects to the devnet and reads the producers registered so far.
    pub async fn new(rpc_url: &str, deployment: Deployment, seed: u64) -> Result<Self> {
        let sender = TxSender::connect(rpc_url).await?;
        let mut rng = StdRng::seed_from_u64(seed);
        let warm_up = WARM_UP.len() as u64;
        let upgrade_at = rng.gen_range(warm_up..warm_up + UPGRADE_WINDOW);
        let mut traffic = Self {
            sender,
            deployment,
            rng,
            seed,
            accounts: dev_addresses(),
            producers: Vec::new(),
            open: OpenStreams::default(),
            closed: Vec::new(),
            customer_plans: Vec::new(),
            upgrade_at,
            upgraded: false,
            next_step: 0,
            totals: TrafficTotals::default(),
            pending: Vec::new(),
        };
        traffic.load_producers().await?;
        Ok(traffic)
    }

    /// The seed the generator was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Totals so far.
    pub fn totals(&self) -> TrafficTotals {
        self.totals
    }

    /// Addresses of every producer clone known so far (from the deployment and `LogProducer`).
    pub fn producer_clones(&self) -> Vec<Address> {
        self.producers.iter().map(|p| p.clone).collect()
    }

    async fn load_producers(&mut self) -> Result<()> {
        let provider = self.sender.provider().clone();
        let storage = ProducerStorage::new(self.deployment.producer_storage, &provider);
        let clones = storage
            .getClones()
            .call()
            .await
            .map_err(|err| Error::rpc("ProducerStorage.getClones", err))?;
        for clone in clones {
            let producer = Producer::new(clone, &provider);
            let owner = producer
                .owner()
                .call()
                .await
                .map_err(|err| Error::rpc("Producer.owner", err))?;
            let plan_count = producer
                .planCount()
                .call()
                .await
                .map_err(|err| Error::rpc("Producer.planCount", err))?;
            let plans = (1..=plan_count.saturating_to::<u64>())
                .map(U256::from)
                .collect();
            self.producers.push(ProducerState {
                clone,
                owner,
                plans,
            });
        }
        Ok(())
    }

    /// Performs one operation, chosen by the seeded generator, and waits until its transactions
    /// are mined.
    pub async fn step(&mut self) -> Result<StepReport> {
        let drawn = self.draw_operation();
        self.sender.refresh_fees().await?;
        let mut report = StepReport {
            step: self.next_step,
            operation: drawn,
            transactions: Vec::new(),
            contract_logs: 0,
        };
        let done = self.perform(drawn, &mut report).await?;
        if !done {
            report.operation = Operation::CreateStream;
            self.create_stream(&mut report).await?;
        }
        self.next_step += 1;
        self.totals.steps += 1;
        Ok(report)
    }

    /// Steps at `rate_per_sec` until `stop` resolves; returns the number of steps performed.
    pub async fn run(&mut self, rate_per_sec: f64, stop: impl Future<Output = ()>) -> Result<u64> {
        self.run_steps(rate_per_sec, None, stop).await
    }

    /// Like [`Traffic::run`], but also stops after `max_steps` steps.
    pub async fn run_steps(
        &mut self,
        rate_per_sec: f64,
        max_steps: Option<u64>,
        stop: impl Future<Output = ()>,
    ) -> Result<u64> {
        if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "traffic rate must be a positive number of steps per second, got {rate_per_sec}"
            )));
        }
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate_per_sec));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        let mut performed = 0;
        while max_steps.is_none_or(|max| performed < max) {
            tokio::select! {
                biased;
                () = &mut stop => break,
                _ = ticker.tick() => {}
            }
            let report = self.step().await?;
            performed += 1;
            if report.unexpected_reverts() > 0 {
                tracing::warn!(
                    step = report.step,
                    operation = %report.operation,
                    reverted = report.unexpected_reverts(),
                    "traffic step had unexpected reverts"
                );
            }
            if self.totals.steps % PROGRESS_EVERY == 0 {
                self.log_progress();
            }
        }
        self.log_progress();
        Ok(performed)
    }

    /// Floods the devnet until the manager, the registry and the producer clones have emitted at
    /// least `min_events` logs during this call; returns how many they emitted.
    ///
    /// Each round moves the clock forward so that the previous round's streams have expired,
    /// lets every producer claim them (two logs per stream), has every customer create a large
    /// batch of short streams (three logs per stream) and then runs a few ordinary steps. The
    /// transactions of a round are sent back to back and only then awaited.
    pub async fn flood(&mut self, min_events: usize) -> Result<usize> {
        let start = self.totals.contract_logs;
        let mut round = 0u64;
        while ((self.totals.contract_logs - start) as usize) < min_events {
            self.sender.increase_time(FLOOD_WARP_SECS).await?;
            self.sender.refresh_fees().await?;
            let mut report = StepReport {
                step: self.next_step,
                operation: Operation::BatchCreate,
                transactions: Vec::new(),
                contract_logs: 0,
            };
            let producers = self.producers.clone();
            for producer in &producers {
                let direct = self.claim_gas(producer.owner).await?;
                self.transact(
                    producer.owner,
                    self.deployment.manager,
                    &StreamLockManager::claimStreamsByProducerCall {},
                    direct,
                    "StreamLockManager.claimStreamsByProducer",
                    false,
                )
                .await?;
                let through_clone = self.claim_gas(producer.clone).await?;
                self.transact(
                    producer.owner,
                    producer.clone,
                    &Producer::claimStreamsCall {},
                    through_clone,
                    "Producer.claimStreams",
                    false,
                )
                .await?;
            }
            let items = FLOOD_BATCH_ITEMS.min(self.max_batch_items());
            for customer in CUSTOMERS {
                for _ in 0..FLOOD_BATCHES_PER_CUSTOMER {
                    let user = self.accounts[customer];
                    let params: Vec<_> = (0..items)
                        .map(|_| {
                            let duration = self.rng.gen_range(1..FLOOD_WARP_SECS - 5);
                            self.stream_params(duration)
                        })
                        .collect();
                    self.send_batch_create(user, params).await?;
                }
            }
            self.flush(&mut report).await?;
            for _ in 0..FLOOD_MIXED_STEPS_PER_ROUND {
                self.step().await?;
            }
            round += 1;
            tracing::info!(
                round,
                logs = self.totals.contract_logs - start,
                target = min_events,
                "generating devnet events"
            );
        }
        Ok((self.totals.contract_logs - start) as usize)
    }

    fn log_progress(&self) {
        tracing::info!(
            steps = self.totals.steps,
            transactions = self.totals.transactions,
            reverted = self.totals.reverted,
            unexpected_reverts = self.totals.unexpected_reverts,
            contract_logs = self.totals.contract_logs,
            open_streams = self.open.list.len(),
            producers = self.producers.len(),
            "devnet traffic"
        );
    }

    fn draw_operation(&mut self) -> Operation {
        let step = self.next_step;
        if step == self.upgrade_at && !self.upgraded {
            return Operation::Upgrade;
        }
        if let Some(operation) = WARM_UP.get(step as usize) {
            return *operation;
        }
        let weights = WEIGHTS.map(|(_, weight)| weight);
        match WeightedIndex::new(weights) {
            Ok(index) => WEIGHTS[index.sample(&mut self.rng)].0,
            Err(_) => Operation::CreateStream,
        }
    }

    /// Runs `operation`; `false` when there was nothing to act on.
    async fn perform(&mut self, operation: Operation, report: &mut StepReport) -> Result<bool> {
        match operation {
            Operation::CreateStream => self.create_stream(report).await.map(|()| true),
            Operation::BatchCreate => self.batch_create(report).await.map(|()| true),
            Operation::IdenticalCreates => self.identical_creates(report).await.map(|()| true),
            Operation::CancelStream => self.cancel_stream(report).await,
            Operation::SettleEarly => self.settle_early(report).await,
            Operation::SettleExpired => self.settle_expired(report).await,
            Operation::ProducerClaim => self.producer_claim(report).await.map(|()| true),
            Operation::EmergencyWithdraw => self.emergency_withdraw(report).await,
            Operation::CreateUsagePool => self.create_usage_pool(report).await.map(|()| true),
            Operation::ConsumeUsage => self.consume_usage(report).await,
            Operation::PauseCycle => self.pause_cycle(report).await.map(|()| true),
            Operation::Upgrade => self.upgrade(report).await.map(|()| true),
            Operation::RegisterProducer => self.register_producer(report).await.map(|()| true),
            Operation::AddPlan => self.add_plan(report).await,
            Operation::SubscribeCustomerPlan => self.subscribe(report).await,
            Operation::ValidateUsage => self.validate_usage(report).await,
            Operation::RevertingCall => self.reverting_call(report).await.map(|()| true),
            Operation::TimeWarp => self.time_warp().await.map(|()| true),
        }
    }

    // ------------------------------------------------------------------------------------
    // Operations
    // ------------------------------------------------------------------------------------

    async fn create_stream(&mut self, report: &mut StepReport) -> Result<()> {
        let user = self.pick_customer();
        let duration = self.pick_duration();
        let params = self.stream_params(duration);
        self.transact(
            user,
            self.deployment.manager,
            &create_call(&params),
            CREATE_GAS,
            "StreamLockManager.createStreamLock",
            false,
        )
        .await?;
        self.flush(report).await.map(drop)
    }

    async fn batch_create(&mut self, report: &mut StepReport) -> Result<()> {
        let user = self.pick_customer();
        let items = self.rng.gen_range(2..=8usize);
        let params: Vec<_> = (0..items)
            .map(|_| {
                let duration = self.pick_duration();
                self.stream_params(duration)
            })
            .collect();
        self.send_batch_create(user, params).await?;
        self.flush(report).await.map(drop)
    }

    async fn identical_creates(&mut self, report: &mut StepReport) -> Result<()> {
        let user = self.pick_customer();
        let duration = self.pick_duration();
        let params = self.stream_params(duration);
        if self.rng.gen_bool(0.5) {
            self.send_batch_create(user, vec![params.clone(), params])
                .await?;
            return self.flush(report).await.map(drop);
        }
        let call = create_call(&params);
        // With automine each transaction gets its own block: pause it so both land in one.
        // Under interval mining (`--block-time`) two back-to-back transactions usually share a
        // block anyway, and the mining mode must not be touched.
        let automine = self
            .sender
            .node_request("anvil_getAutomine", Value::Array(vec![]))
            .await?
            .as_bool()
            .unwrap_or(false);
        if automine {
            self.sender
                .node_request("evm_setAutomine", Value::Array(vec![false.into()]))
                .await?;
        }
        let mut sent = Ok(());
        for _ in 0..2 {
            sent = self
                .transact(
                    user,
                    self.deployment.manager,
                    &call,
                    CREATE_GAS,
                    "StreamLockManager.createStreamLock",
                    false,
                )
                .await;
            if sent.is_err() {
                break;
            }
        }
        if automine {
            let mined = self.sender.mine().await;
            self.sender
                .node_request("evm_setAutomine", Value::Array(vec![true.into()]))
                .await?;
            mined?;
        }
        sent?;
        self.flush(report).await.map(drop)
    }

    async fn cancel_stream(&mut self, report: &mut StepReport) -> Result<bool> {
        let Some(stream) = self.open.pick(&mut self.rng, |_| true) else {
            return Ok(false);
        };
        self.transact(
            stream.user,
            self.deployment.manager,
            &StreamLockManager::cancelStreamCall {
                lockId: stream.lock_id,
            },
            SETTLE_GAS,
            "StreamLockManager.cancelStream",
            false,
        )
        .await?;
        self.flush(report).await.map(|_| true)
    }

    async fn settle_early(&mut self, report: &mut StepReport) -> Result<bool> {
        let Some(stream) = self.open.pick(&mut self.rng, |_| true) else {
            return Ok(false);
        };
        let caller = if self.is_clone(stream.recipient) {
            stream.user
        } else {
            stream.recipient
        };
        self.settle(caller, stream.lock_id, report).await?;
        Ok(true)
    }

    async fn settle_expired(&mut self, report: &mut StepReport) -> Result<bool> {
        let now = self.sender.latest_block_header().await?.timestamp;
        let mut best: Option<(OpenStream, u64)> = None;
        for _ in 0..4 {
            let Some(stream) = self.open.pick(&mut self.rng, |s| s.usages_left.is_none()) else {
                return Ok(false);
            };
            let lock = StreamLockManager::new(self.deployment.manager, self.sender.provider())
                .getTokenLock(stream.lock_id)
                .call()
                .await
                .map_err(|err| Error::rpc("StreamLockManager.getTokenLock", err))?;
            if !lock.isActive {
                self.close(&stream.lock_id);
                continue;
            }
            let remaining = lock.endTime.saturating_to::<u64>().saturating_sub(now);
            if best.as_ref().is_none_or(|(_, r)| remaining < *r) {
                best = Some((stream, remaining));
            }
        }
        let Some((stream, remaining)) = best else {
            return Ok(false);
        };
        if remaining > MAX_WARP_FOR_SETTLE_SECS {
            return Ok(false);
        }
        if remaining > 0 {
            // Applies to the next block, the one that will include the settlement.
            self.sender.increase_time(remaining + 1).await?;
        }
        let bystanders: Vec<Address> = self
            .accounts
            .iter()
            .copied()
            .filter(|a| *a != stream.user && *a != stream.recipient)
            .collect();
        let caller = *bystanders
            .choose(&mut self.rng)
            .ok_or_else(|| Error::Unexpected("no account to settle with".into()))?;
        self.settle(caller, stream.lock_id, report).await?;
        Ok(true)
    }

    async fn settle(
        &mut self,
        caller: Address,
        lock_id: B256,
        report: &mut StepReport,
    ) -> Result<()> {
        self.transact(
            caller,
            self.deployment.manager,
            &StreamLockManager::settleStreamCall { lockId: lock_id },
            SETTLE_GAS,
            "StreamLockManager.settleStream",
            false,
        )
        .await?;
        self.flush(report).await.map(drop)
    }

    async fn producer_claim(&mut self, report: &mut StepReport) -> Result<()> {
        let roll = self.rng.gen_range(0..10);
        let producer = self.producers.choose(&mut self.rng).cloned();
        match (roll, producer) {
            (0..=3, Some(producer)) => {
                let gas = self.claim_gas(producer.owner).await?;
                self.transact(
                    producer.owner,
                    self.deployment.manager,
                    &StreamLockManager::claimStreamsByProducerCall {},
                    gas,
                    "StreamLockManager.claimStreamsByProducer",
                    false,
                )
                .await?;
            }
            (4..=7, Some(producer)) => {
                let gas = self.claim_gas(producer.clone).await?;
                self.transact(
                    producer.owner,
                    producer.clone,
                    &Producer::claimStreamsCall {},
                    gas,
                    "Producer.claimStreams",
                    false,
                )
                .await?;
            }
            _ => {
                // The deployer is nobody's recipient: the batch claim settles nothing and still
                // emits ProducerBatchClaim with a count of 0.
                let bystander = self.accounts[DEPLOYER];
                let gas = self.claim_gas(bystander).await?;
                self.transact(
                    bystander,
                    self.deployment.manager,
                    &StreamLockManager::claimStreamsByProducerCall {},
                    gas,
                    "StreamLockManager.claimStreamsByProducer",
                    false,
                )
                .await?;
            }
        }
        self.flush(report).await.map(drop)
    }

    async fn emergency_withdraw(&mut self, report: &mut StepReport) -> Result<bool> {
        let Some(stream) = self.open.pick(&mut self.rng, |s| s.usages_left.is_none()) else {
            return Ok(false);
        };
        self.transact(
            stream.user,
            self.deployment.manager,
            &StreamLockManager::emergencyWithdrawCall {
                lockId: stream.lock_id,
            },
            SETTLE_GAS,
            "StreamLockManager.emergencyWithdraw",
            false,
        )
        .await?;
        self.flush(report).await.map(|_| true)
    }

    async fn create_usage_pool(&mut self, report: &mut StepReport) -> Result<()> {
        let user = self.pick_customer();
        let recipient = self.pick_recipient();
        let usages = self.rng.gen_range(5..=40u64);
        let price = U256::from(self.rng.gen_range(10..=1_000u64))
            * U256::from(10u64).pow(U256::from(15u64));
        // A remainder that does not divide evenly: it stays locked when the pool is used up.
        let dust = U256::from(self.rng.gen_range(0..usages));
        let duration = self.rng.gen_range(86_400..=30 * 86_400u64);
        self.transact(
            user,
            self.deployment.manager,
            &StreamLockManager::createUsagePoolCall {
                recipient,
                token: self.deployment.token,
                totalAmount: price * U256::from(usages) + dust,
                usageCount: U256::from(usages),
                duration: U256::from(duration),
            },
            POOL_GAS,
            "StreamLockManager.createUsagePool",
            false,
        )
        .await?;
        let mined = self.flush(report).await?;
        for lock_id in mined.iter().flat_map(|m| m.created.iter()) {
            if let Some(stream) = self.open.get_mut(lock_id) {
                stream.usages_left = Some(usages);
            }
        }
        Ok(())
    }

    async fn consume_usage(&mut self, report: &mut StepReport) -> Result<bool> {
        let Some(pool) = self.open.pick(&mut self.rng, |s| {
            s.usages_left.is_some_and(|left| left > 0)
        }) else {
            return Ok(false);
        };
        let left = pool.usages_left.unwrap_or(0);
        let usages = self.rng.gen_range(1..=left.min(4));
        // The recipient may consume; a clone cannot call by itself, so the owner does.
        let caller = if self.is_clone(pool.recipient) {
            self.accounts[DEPLOYER]
        } else {
            pool.recipient
        };
        self.transact(
            caller,
            self.deployment.manager,
            &StreamLockManager::consumeUsageFromPoolCall {
                poolId: pool.lock_id,
                usages: U256::from(usages),
            },
            POOL_GAS,
            "StreamLockManager.consumeUsageFromPool",
            false,
        )
        .await?;
        let mined = self.flush(report).await?;
        if mined.iter().all(|m| m.receipt.status()) {
            let remaining = left - usages;
            if remaining == 0 {
                self.close(&pool.lock_id);
            } else if let Some(stream) = self.open.get_mut(&pool.lock_id) {
                stream.usages_left = Some(remaining);
            }
        }
        Ok(true)
    }

    async fn pause_cycle(&mut self, report: &mut StepReport) -> Result<()> {
        let owner = self.accounts[DEPLOYER];
        let manager = self.deployment.manager;
        self.transact(
            owner,
            manager,
            &StreamLockManager::pauseCall {},
            ADMIN_GAS,
            "StreamLockManager.pause",
            false,
        )
        .await?;
        // Creation is refused while paused (EnforcedPause)...
        let user = self.pick_customer();
        let duration = self.pick_duration();
        let params = self.stream_params(duration);
        self.transact(
            user,
            manager,
            &create_call(&params),
            CREATE_GAS,
            "StreamLockManager.createStreamLock",
            true,
        )
        .await?;
        // ...settlement is not.
        if let Some(stream) = self.open.pick(&mut self.rng, |_| true) {
            self.transact(
                stream.user,
                manager,
                &StreamLockManager::cancelStreamCall {
                    lockId: stream.lock_id,
                },
                SETTLE_GAS,
                "StreamLockManager.cancelStream",
                false,
            )
            .await?;
        }
        self.transact(
            owner,
            manager,
            &StreamLockManager::unpauseCall {},
            ADMIN_GAS,
            "StreamLockManager.unpause",
            false,
        )
        .await?;
        self.flush(report).await.map(drop)
    }

    async fn upgrade(&mut self, report: &mut StepReport) -> Result<()> {
        let owner = self.accounts[DEPLOYER];
        let sent = self
            .sender
            .send_deploy(
                owner,
                StreamLockManagerV2::BYTECODE.clone(),
                UPGRADE_DEPLOY_GAS,
                "StreamLockManagerV2 (deploy)",
            )
            .await?;
        self.pending.push(sent);
        let mined = self.flush(report).await?;
        let implementation = mined
            .first()
            .and_then(|m| m.receipt.contract_address())
            .ok_or_else(|| Error::Unexpected("StreamLockManagerV2 was not deployed".into()))?;
        self.transact(
            owner,
            self.deployment.manager,
            &StreamLockManager::upgradeToAndCallCall {
                newImplementation: implementation,
                data: Bytes::new(),
            },
            ADMIN_GAS,
            "StreamLockManager.upgradeToAndCall",
            false,
        )
        .await?;
        self.flush(report).await?;
        self.upgraded = true;
        tracing::info!(%implementation, "manager proxy upgraded to StreamLockManagerV2");
        Ok(())
    }

    async fn register_producer(&mut self, report: &mut StepReport) -> Result<()> {
        let owner = *self.accounts[1..]
            .choose(&mut self.rng)
            .ok_or_else(|| Error::Unexpected("no account to own a producer".into()))?;
        let name = format!("Producer {}", self.producers.len() + 1);
        let known = self.producers.len();
        self.transact(
            owner,
            self.deployment.factory,
            &Factory::newBcontractCall { name },
            NEW_PRODUCER_GAS,
            "Factory.newBcontract",
            false,
        )
        .await?;
        self.flush(report).await?;
        // `absorb` added the clone from the registry's LogProducer.
        let clone = self.producers.get(known).map(|p| p.clone).ok_or_else(|| {
            Error::Unexpected("Factory.newBcontract emitted no LogProducer".into())
        })?;
        if self.rng.gen_bool(0.75) {
            self.transact(
                self.accounts[DEPLOYER],
                self.deployment.manager,
                &StreamLockManager::setAuthorizedCallerCall {
                    caller: clone,
                    authorized: true,
                },
                ADMIN_GAS,
                "StreamLockManager.setAuthorizedCaller",
                false,
            )
            .await?;
        }
        let plan = self.plan_call();
        self.transact(owner, clone, &plan, PLAN_GAS, "Producer.addPlan", false)
            .await?;
        self.flush(report).await.map(drop)
    }

    async fn add_plan(&mut self, report: &mut StepReport) -> Result<bool> {
        let Some(producer) = self.producers.choose(&mut self.rng).cloned() else {
            return Ok(false);
        };
        let plan = self.plan_call();
        self.transact(
            producer.owner,
            producer.clone,
            &plan,
            PLAN_GAS,
            "Producer.addPlan",
            false,
        )
        .await?;
        self.flush(report).await.map(|_| true)
    }

    async fn subscribe(&mut self, report: &mut StepReport) -> Result<bool> {
        let with_plans: Vec<ProducerState> = self
            .producers
            .iter()
            .filter(|p| !p.plans.is_empty())
            .cloned()
            .collect();
        let Some(producer) = with_plans.choose(&mut self.rng) else {
            return Ok(false);
        };
        let Some(plan_id) = producer.plans.choose(&mut self.rng).copied() else {
            return Ok(false);
        };
        let customer = self.pick_customer();
        self.transact(
            customer,
            producer.clone,
            &Producer::addCustomerPlanWithStreamCall { planId: plan_id },
            SUBSCRIBE_GAS,
            "Producer.addCustomerPlanWithStream",
            false,
        )
        .await?;
        self.flush(report).await.map(|_| true)
    }

    async fn validate_usage(&mut self, report: &mut StepReport) -> Result<bool> {
        let Some((clone, customer_plan_id)) = self.customer_plans.choose(&mut self.rng).copied()
        else {
            return Ok(false);
        };
        let caller = self
            .producers
            .iter()
            .find(|p| p.clone == clone)
            .map_or(self.accounts[DEPLOYER], |p| p.owner);
        self.transact(
            caller,
            clone,
            &Producer::validateUsageCall {
                customerPlanId: customer_plan_id,
            },
            VALIDATE_GAS,
            "Producer.validateUsage",
            false,
        )
        .await?;
        self.flush(report).await.map(|_| true)
    }

    async fn reverting_call(&mut self, report: &mut StepReport) -> Result<()> {
        let manager = self.deployment.manager;
        let closed = self.closed.choose(&mut self.rng).copied();
        let roll = self.rng.gen_range(0..3);
        match (roll, closed) {
            (0, Some(lock_id)) => {
                // StreamNotActive().
                let caller = self.pick_customer();
                self.transact(
                    caller,
                    manager,
                    &StreamLockManager::settleStreamCall { lockId: lock_id },
                    REVERT_GAS,
                    "StreamLockManager.settleStream",
                    true,
                )
                .await?;
            }
            (1, _) if !self.open.list.is_empty() => {
                // OnlyStreamOwner(): someone else cancels.
                let stream = self
                    .open
                    .pick(&mut self.rng, |_| true)
                    .ok_or_else(|| Error::Unexpected("no open stream".into()))?;
                let stranger = self
                    .accounts
                    .iter()
                    .copied()
                    .find(|a| *a != stream.user)
                    .unwrap_or(self.accounts[DEPLOYER]);
                self.transact(
                    stranger,
                    manager,
                    &StreamLockManager::cancelStreamCall {
                        lockId: stream.lock_id,
                    },
                    REVERT_GAS,
                    "StreamLockManager.cancelStream",
                    true,
                )
                .await?;
            }
            _ => {
                // InvalidStreamParams(): a zero duration.
                let user = self.pick_customer();
                let mut params = self.stream_params(60);
                params.duration = U256::ZERO;
                self.transact(
                    user,
                    manager,
                    &create_call(&params),
                    REVERT_GAS,
                    "StreamLockManager.createStreamLock",
                    true,
                )
                .await?;
            }
        }
        self.flush(report).await.map(drop)
    }

    async fn time_warp(&mut self) -> Result<()> {
        let seconds = self.rng.gen_range(5..=600u64);
        self.sender.increase_time(seconds).await?;
        self.sender.mine().await
    }

    // ------------------------------------------------------------------------------------
    // Sending and bookkeeping
    // ------------------------------------------------------------------------------------

    /// Sends one `batchCreateStreams` of `params` from `user`, with gas for its size.
    async fn send_batch_create(
        &mut self,
        user: Address,
        params: Vec<IStreamLockManager::StreamParams>,
    ) -> Result<()> {
        let gas = BATCH_BASE_GAS + BATCH_ITEM_GAS * params.len() as u64;
        self.transact(
            user,
            self.deployment.manager,
            &StreamLockManager::batchCreateStreamsCall { params },
            gas,
            "StreamLockManager.batchCreateStreams",
            false,
        )
        .await
    }

    async fn transact<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
        gas: u64,
        label: &'static str,
        expect_revert: bool,
    ) -> Result<()> {
        let sent = self
            .sender
            .send_call(from, to, call, gas, label, expect_revert)
            .await?;
        self.pending.push(sent);
        Ok(())
    }

    /// Waits for every pending transaction, in order, and updates what the generator knows.
    async fn flush(&mut self, report: &mut StepReport) -> Result<Vec<Mined>> {
        let pending = std::mem::take(&mut self.pending);
        let mut mined = Vec::with_capacity(pending.len());
        for sent in pending {
            let receipt = self.sender.wait(&sent).await?;
            let succeeded = receipt.status();
            let (logs, created) = self.absorb(&receipt);
            report.contract_logs += logs;
            self.totals.contract_logs += logs as u64;
            self.totals.transactions += 1;
            if !succeeded {
                self.totals.reverted += 1;
            }
            if succeeded == sent.expect_revert {
                self.totals.unexpected_reverts += 1;
            }
            report.transactions.push(TxOutcome {
                tx_hash: sent.tx_hash,
                label: sent.label,
                succeeded,
                expected_revert: sent.expect_revert,
            });
            mined.push(Mined {
                sent,
                receipt,
                created,
            });
        }
        if let Some(unexpected) = mined
            .iter()
            .find(|m| m.receipt.status() == m.sent.expect_revert)
        {
            tracing::debug!(
                tx = %unexpected.sent.tx_hash,
                call = unexpected.sent.label,
                "transaction did not end as intended"
            );
        }
        Ok(mined)
    }

    /// Reads a receipt's logs: returns how many came from the watched contracts and the lock ids
    /// created, and keeps the open streams, producers, plans and customer plans up to date.
    fn absorb(&mut self, receipt: &TransactionReceipt) -> (usize, Vec<B256>) {
        let mut counted = 0;
        let mut created = Vec::new();
        for log in receipt.inner.logs() {
            let address = log.address();
            let topic0 = log.topic0().copied().unwrap_or_default();
            if address == self.deployment.manager {
                counted += 1;
                if topic0 == StreamLockManager::StreamLockCreated::SIGNATURE_HASH {
                    if let Ok(event) = StreamLockManager::StreamLockCreated::decode_log(&log.inner)
                    {
                        created.push(event.lockId);
                        self.open.insert(OpenStream {
                            lock_id: event.lockId,
                            user: event.user,
                            recipient: event.recipient,
                            usages_left: None,
                        });
                    }
                } else if topic0 == StreamLockManager::StreamSettled::SIGNATURE_HASH {
                    if let Ok(event) = StreamLockManager::StreamSettled::decode_log(&log.inner) {
                        self.close(&event.lockId);
                    }
                } else if topic0 == StreamLockManager::EmergencyWithdraw::SIGNATURE_HASH {
                    if let Ok(event) = StreamLockManager::EmergencyWithdraw::decode_log(&log.inner)
                    {
                        self.close(&event.lockId);
                    }
                }
            } else if address == self.deployment.producer_storage {
                counted += 1;
                if let Ok(event) = ProducerStorage::LogProducer::decode_log(&log.inner) {
                    if !self.is_clone(event.cloneAddress) {
                        self.producers.push(ProducerState {
                            clone: event.cloneAddress,
                            owner: event.producerAddress,
                            plans: Vec::new(),
                        });
                    }
                }
            } else if let Some(producer) = self.producers.iter_mut().find(|p| p.clone == address) {
                counted += 1;
                if topic0 == Producer::LogAddPlan::SIGNATURE_HASH {
                    if let Ok(event) = Producer::LogAddPlan::decode_log(&log.inner) {
                        producer.plans.push(event.planId);
                    }
                } else if topic0 == Producer::CustomerPlanWithStreamCreated::SIGNATURE_HASH {
                    if let Ok(event) =
                        Producer::CustomerPlanWithStreamCreated::decode_log(&log.inner)
                    {
                        self.customer_plans.push((address, event.customerPlanId));
                    }
                }
            }
        }
        (counted, created)
    }

    fn close(&mut self, lock_id: &B256) {
        if self.open.remove(lock_id).is_some() {
            if self.closed.len() >= CLOSED_MEMORY {
                self.closed.drain(..CLOSED_MEMORY / 2);
            }
            self.closed.push(*lock_id);
        }
    }

    fn is_clone(&self, address: Address) -> bool {
        self.producers.iter().any(|p| p.clone == address)
    }

    /// Gas for a batch claim by `recipient`, from the streams open on chain (the generator may
    /// not know all of them: another run may have created some).
    async fn claim_gas(&self, recipient: Address) -> Result<u64> {
        let open = StreamLockManager::new(self.deployment.manager, self.sender.provider())
            .getOpenStreams(recipient)
            .call()
            .await
            .map_err(|err| Error::rpc("StreamLockManager.getOpenStreams", err))?;
        Ok(CLAIM_BASE_GAS + CLAIM_PER_STREAM_GAS * open.len() as u64)
    }

    fn max_batch_items(&self) -> usize {
        let limit = self.sender.block_gas_limit().saturating_sub(BATCH_BASE_GAS);
        ((limit / BATCH_ITEM_GAS) as usize).max(1)
    }

    // ------------------------------------------------------------------------------------
    // Random parameters
    // ------------------------------------------------------------------------------------

    fn pick_customer(&mut self) -> Address {
        let index = *CUSTOMERS.choose(&mut self.rng).unwrap_or(&DEPLOYER);
        self.accounts[index]
    }

    /// A producer's account or its clone, half and half.
    fn pick_recipient(&mut self) -> Address {
        match self.producers.choose(&mut self.rng) {
            Some(producer) if self.rng.gen_bool(0.5) => producer.clone,
            Some(producer) => producer.owner,
            None => self.accounts[1],
        }
    }

    /// Mostly short streams (they expire while the generator runs), some long ones.
    fn pick_duration(&mut self) -> u64 {
        match self.rng.gen_range(0..10) {
            0..=5 => self.rng.gen_range(5..=120),
            6..=8 => self.rng.gen_range(300..=3_600),
            _ => self.rng.gen_range(86_400..=30 * 86_400),
        }
    }

    /// Parameters of one stream of `duration` seconds: a random recipient and an amount of 1 to
    /// 500 tokens with a random remainder, so the rate rounds down and leaves dust.
    fn stream_params(&mut self, duration: u64) -> IStreamLockManager::StreamParams {
        let whole = whole_tokens(self.rng.gen_range(1..=500u64));
        let remainder = U256::from(self.rng.gen_range(0..1_000_000_000_000_000_000u64));
        IStreamLockManager::StreamParams {
            recipient: self.pick_recipient(),
            token: self.deployment.token,
            totalAmount: whole + remainder,
            duration: U256::from(duration),
        }
    }

    fn plan_call(&mut self) -> Producer::addPlanCall {
        const DURATIONS: [u64; 5] = [30, 60, 300, 3_600, 86_400];
        let duration = *DURATIONS.choose(&mut self.rng).unwrap_or(&60);
        let number = self.rng.gen_range(1..=999u32);
        Producer::addPlanCall {
            planName: format!("Plan {number}"),
            planType: self.rng.gen_range(0..3u8),
            token: self.deployment.token,
            price: whole_tokens(self.rng.gen_range(1..=50u64)),
            duration: U256::from(duration),
        }
    }
}

/// Connects to the devnet and floods it until at least `min_events` logs were emitted by the
/// manager, the registry and the producer clones; returns how many were.
pub async fn generate_events(
    rpc_url: &str,
    deployment: Deployment,
    seed: u64,
    min_events: usize,
) -> Result<usize> {
    let mut traffic = Traffic::new(rpc_url, deployment, seed).await?;
    traffic.flood(min_events).await
}

/// The `createStreamLock` call for one set of stream parameters.
fn create_call(
    params: &IStreamLockManager::StreamParams,
) -> StreamLockManager::createStreamLockCall {
    StreamLockManager::createStreamLockCall {
        recipient: params.recipient,
        token: params.token,
        totalAmount: params.totalAmount,
        duration: params.duration,
    }
}
