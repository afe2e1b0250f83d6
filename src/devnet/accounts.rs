//! The accounts anvil funds at start-up.
//!
//! anvil derives its ten default accounts from the public test mnemonic
//! `test test test test test test test test test test test junk` (path `m/44'/60'/0'/0/i`). Their
//! keys are published in anvil's own start-up banner and hold value only on local devnets, which
//! is why they can live in the source.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;

/// Private keys of anvil's default accounts #0 to #9, in order.
const DEV_PRIVATE_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Number of anvil default accounts the devnet uses.
pub const DEV_ACCOUNT_COUNT: usize = DEV_PRIVATE_KEYS.len();

/// Index of the deployer: it owns the manager (pause, upgrade, authorizations) and the registry.
pub const DEPLOYER: usize = 0;

/// Indices of the accounts that register the initial producers through the Factory.
pub const INITIAL_PRODUCER_OWNERS: [usize; 3] = [1, 2, 3];

/// Indices of the accounts that mostly act as customers (they open and cancel streams).
pub const CUSTOMERS: [usize; 6] = [4, 5, 6, 7, 8, 9];

/// Signers for anvil's default accounts #0 to #9.
pub fn dev_signers() -> Vec<PrivateKeySigner> {
    DEV_PRIVATE_KEYS
        .iter()
        .map(|key| {
            key.parse()
                .expect("the anvil dev keys are valid secp256k1 keys")
        })
        .collect()
}

/// Addresses of anvil's default accounts #0 to #9.
pub fn dev_addresses() -> Vec<Address> {
    dev_signers()
        .iter()
        .map(PrivateKeySigner::address)
        .collect()
}
