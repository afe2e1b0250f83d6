//! Sending transactions from anvil's dev accounts without waiting for each one.
//!
//! Every transaction is fully specified here (nonce, gas limit, fees, chain id) so that nothing is
//! estimated: a transaction that is meant to revert is still mined (with status 0), and many
//! transactions can be in flight at once, which is what makes event generation fast.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, ReceiptResponse, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{BlockNumberOrTag, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use serde_json::Value;

use super::accounts::dev_signers;
use super::error::{Error, Result};
use crate::redact::redact_urls_in_text;

/// How long a sent transaction may take to be mined. Generous, so that interval mining
/// (`anvil --block-time N`) works too.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// First pause between receipt polls; doubles up to [`RECEIPT_POLL_MAX`]. With automine the
/// receipt usually exists before the first poll.
const RECEIPT_POLL_START: Duration = Duration::from_millis(2);
const RECEIPT_POLL_MAX: Duration = Duration::from_millis(200);
/// How long a transaction may wait for its receipt before a block is mined to pick it up.
const RECEIPT_NUDGE_AFTER: Duration = Duration::from_secs(5);
/// Priority fee offered: anvil orders by it, but there is no competition on a devnet.
const PRIORITY_FEE_WEI: u128 = 1;
/// Lower bound of the max fee, so that a base fee rising between refreshes does not strand
/// transactions in the pool.
const MIN_MAX_FEE_WEI: u128 = 2_000_000_000;

/// A transaction sent but not yet waited for.
#[derive(Debug, Clone)]
pub(crate) struct SentTx {
    pub(crate) tx_hash: B256,
    pub(crate) label: &'static str,
    pub(crate) expect_revert: bool,
}

/// Signs with every dev account and tracks their nonces locally.
pub(crate) struct TxSender {
    provider: DynProvider,
    chain_id: u64,
    block_gas_limit: u64,
    max_fee_per_gas: u128,
    nonces: HashMap<Address, u64>,
}

impl TxSender {
    /// Connects to `rpc_url` (http(s) or ws(s)) with all ten dev accounts as signers.
    pub(crate) async fn connect(rpc_url: &str) -> Result<Self> {
        let mut signers = dev_signers().into_iter();
        let mut wallet = EthereumWallet::new(
            signers
                .next()
                .ok_or_else(|| Error::Unexpected("no dev account".into()))?,
        );
        for signer in signers {
            wallet.register_signer(signer);
        }
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .wallet(wallet)
            .connect(rpc_url)
            .await
            .map_err(|err| Error::Connect {
                detail: redact_urls_in_text(&err.to_string()),
            })?
            .erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|err| Error::rpc("eth_chainId", err))?;
        let mut sender = Self {
            provider,
            chain_id,
            block_gas_limit: 0,
            max_fee_per_gas: MIN_MAX_FEE_WEI,
            nonces: HashMap::new(),
        };
        sender.refresh_fees().await?;
        Ok(sender)
    }

    /// The provider, for reads.
    pub(crate) fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The chain id reported by the node.
    pub(crate) fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The gas limit of the latest block: no single transaction may ask for more.
    pub(crate) fn block_gas_limit(&self) -> u64 {
        self.block_gas_limit
    }

    /// Re-reads the latest base fee and block gas limit. Call it now and then: the max fee
    /// offered is ten times the base fee seen here, so that a run of full blocks (the base fee
    /// grows by up to 12.5 % per block) does not strand transactions before the next refresh;
    /// the price paid is still the base fee plus the priority fee.
    pub(crate) async fn refresh_fees(&mut self) -> Result<()> {
        let latest = self.latest_block_header().await?;
        let base_fee = u128::from(latest.base_fee_per_gas.unwrap_or_default());
        self.max_fee_per_gas = (base_fee * 10 + PRIORITY_FEE_WEI).max(MIN_MAX_FEE_WEI);
        self.block_gas_limit = latest.gas_limit;
        Ok(())
    }

    /// Header of the latest block.
    pub(crate) async fn latest_block_header(&self) -> Result<alloy::rpc::types::Header> {
        self.provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(|err| Error::rpc("eth_getBlockByNumber", err))?
            .map(|block| block.header)
            .ok_or_else(|| Error::Unexpected("the node has no latest block".into()))
    }

    /// Sends a contract call from `from` with a fixed gas limit (capped to the block gas limit).
    pub(crate) async fn send_call<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
        gas: u64,
        label: &'static str,
        expect_revert: bool,
    ) -> Result<SentTx> {
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(Bytes::from(call.abi_encode()));
        self.send(from, tx, gas, label, expect_revert).await
    }

    /// Sends a contract creation (`code` = creation bytecode followed by constructor arguments)
    /// and waits for the new contract's address.
    pub(crate) async fn deploy(
        &mut self,
        from: Address,
        code: Bytes,
        gas: u64,
        contract: &'static str,
    ) -> Result<Address> {
        let sent = self.send_deploy(from, code, gas, contract).await?;
        let receipt = self.confirm(&sent).await?;
        receipt.contract_address().ok_or(Error::NoContract {
            contract,
            tx_hash: sent.tx_hash,
        })
    }

    /// Sends a contract creation without waiting for it.
    pub(crate) async fn send_deploy(
        &mut self,
        from: Address,
        code: Bytes,
        gas: u64,
        label: &'static str,
    ) -> Result<SentTx> {
        let tx = TransactionRequest::default().with_deploy_code(code);
        self.send(from, tx, gas, label, false).await
    }

    async fn send(
        &mut self,
        from: Address,
        tx: TransactionRequest,
        gas: u64,
        label: &'static str,
        expect_revert: bool,
    ) -> Result<SentTx> {
        let nonce = self.next_nonce(from).await?;
        let gas = if self.block_gas_limit > 0 {
            gas.min(self.block_gas_limit)
        } else {
            gas
        };
        let tx = tx
            .with_from(from)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(self.max_fee_per_gas)
            .with_max_priority_fee_per_gas(PRIORITY_FEE_WEI);
        match self.provider.send_transaction(tx).await {
            Ok(pending) => {
                self.nonces.insert(from, nonce + 1);
                Ok(SentTx {
                    tx_hash: *pending.tx_hash(),
                    label,
                    expect_revert,
                })
            }
            Err(err) => {
                // The nonce may or may not have been consumed: ask the node next time.
                self.nonces.remove(&from);
                Err(Error::rpc("eth_sendRawTransaction", err))
            }
        }
    }

    async fn next_nonce(&mut self, from: Address) -> Result<u64> {
        if let Some(nonce) = self.nonces.get(&from) {
            return Ok(*nonce);
        }
        let nonce = self
            .provider
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(|err| Error::rpc("eth_getTransactionCount", err))?;
        self.nonces.insert(from, nonce);
        Ok(nonce)
    }

    /// Waits until `sent` is mined and returns its receipt, whatever its status.
    pub(crate) async fn wait(&self, sent: &SentTx) -> Result<TransactionReceipt> {
        let started = Instant::now();
        let mut pause = RECEIPT_POLL_START;
        let mut nudged_at = Instant::now();
        loop {
            let receipt = self
                .provider
                .get_transaction_receipt(sent.tx_hash)
                .await
                .map_err(|err| Error::rpc("eth_getTransactionReceipt", err))?;
            if let Some(receipt) = receipt {
                return Ok(receipt);
            }
            if started.elapsed() > RECEIPT_TIMEOUT {
                return Err(Error::NotMined {
                    operation: sent.label.to_string(),
                    tx_hash: sent.tx_hash,
                    waited: started.elapsed(),
                });
            }
            // Under a heavy flood anvil's automine occasionally leaves an executable
            // transaction in its pool; mining a block picks it up.
            if nudged_at.elapsed() > RECEIPT_NUDGE_AFTER {
                nudged_at = Instant::now();
                self.mine().await?;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECEIPT_POLL_MAX);
        }
    }

    /// Waits for `sent` and fails if it reverted.
    pub(crate) async fn confirm(&self, sent: &SentTx) -> Result<TransactionReceipt> {
        let receipt = self.wait(sent).await?;
        if !receipt.status() {
            return Err(Error::Reverted {
                operation: sent.label.to_string(),
                tx_hash: sent.tx_hash,
            });
        }
        Ok(receipt)
    }

    /// Calls a node method that alloy has no typed wrapper for here (`evm_mine`, ...).
    pub(crate) async fn node_request(&self, method: &'static str, params: Value) -> Result<Value> {
        self.provider
            .raw_request::<_, Value>(method.into(), params)
            .await
            .map_err(|err| Error::rpc(method, err))
    }

    /// Moves the node's clock forward by `seconds` (applies to the next block).
    pub(crate) async fn increase_time(&self, seconds: u64) -> Result<()> {
        self.node_request("evm_increaseTime", Value::Array(vec![seconds.into()]))
            .await
            .map(drop)
    }

    /// Mines one block now.
    pub(crate) async fn mine(&self) -> Result<()> {
        self.node_request("evm_mine", Value::Array(vec![]))
            .await
            .map(drop)
    }
}
