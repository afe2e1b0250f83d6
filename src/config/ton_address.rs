//! TON account addresses as they are written in configuration.
//!
//! Two forms are accepted: raw `workchain:hex` (`0:` followed by 64 hex digits), and the 48-character
//! user-friendly form in base64 or base64url, whose 36 bytes are a flags byte, the workchain byte,
//! the 32-byte account id and a CRC16/XMODEM of the first 34 bytes. The checksum is verified: a typo
//! in a deposit address must be an error, not a silently watched wrong account.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;

/// Flags byte of a bounceable user-friendly address.
const FLAG_BOUNCEABLE: u8 = 0x11;
/// Flags byte of a non-bounceable user-friendly address.
const FLAG_NON_BOUNCEABLE: u8 = 0x51;
/// Added to the flags byte of an address meant for testnet only.
const FLAG_TESTNET_ONLY: u8 = 0x80;

/// A TON account address: workchain and 256-bit account id.
///
/// `Display` prints the raw form `workchain:hex` (lowercase), the normalised form chainsync stores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TonAddress {
    workchain: i32,
    account_id: [u8; 32],
}

impl TonAddress {
    /// An address from its parts.
    pub const fn new(workchain: i32, account_id: [u8; 32]) -> Self {
        Self {
            workchain,
            account_id,
        }
    }

    /// The workchain (0 for the basechain, -1 for the masterchain).
    pub const fn workchain(&self) -> i32 {
        self.workchain
    }

    /// The 256-bit account id.
    pub const fn account_id(&self) -> &[u8; 32] {
        &self.account_id
    }

    /// The raw form, `workchain:hex`.
    pub fn to_raw(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TonAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.workchain, hex::encode(self.account_id))
    }
}

impl fmt::Debug for TonAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TonAddress({self})")
    }
}

/// Why a string is not a TON address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TonAddressError(&'static str);

impl FromStr for TonAddress {
    type Err = TonAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(|parsed| parsed.address)
    }
}

/// An address and what its written form said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParsedTonAddress {
    pub(super) address: TonAddress,
    /// The user-friendly form carried the testnet-only flag.
    pub(super) testnet_only: bool,
}

/// Parses either form of a TON address.
pub(super) fn parse(s: &str) -> Result<ParsedTonAddress, TonAddressError> {
    if let Some((workchain, account_id)) = s.split_once(':') {
        return parse_raw(workchain, account_id);
    }
    parse_user_friendly(s)
}

fn parse_raw(workchain: &str, account_id: &str) -> Result<ParsedTonAddress, TonAddressError> {
    let workchain: i32 = workchain.parse().map_err(|_| {
        TonAddressError("the workchain before `:` must be an integer such as 0 or -1")
    })?;
    if account_id.len() != 64 {
        return Err(TonAddressError(
            "a raw address needs exactly 64 hex digits after `:`",
        ));
    }
    let mut bytes = [0_u8; 32];
    hex::decode_to_slice(account_id, &mut bytes)
        .map_err(|_| TonAddressError("a raw address needs exactly 64 hex digits after `:`"))?;
    Ok(ParsedTonAddress {
        address: TonAddress::new(workchain, bytes),
        testnet_only: false,
    })
}

fn parse_user_friendly(s: &str) -> Result<ParsedTonAddress, TonAddressError> {
    const SHAPE: &str = "expected a raw `workchain:hex` address or a 48-character user-friendly base64/base64url address";
    if s.len() != 48 {
        return Err(TonAddressError(SHAPE));
    }
    let engine = if s.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    let bytes = engine.decode(s).map_err(|_| TonAddressError(SHAPE))?;
    let Ok(bytes) = <[u8; 36]>::try_from(bytes.as_slice()) else {
        return Err(TonAddressError(SHAPE));
    };

    let expected_crc = crc16_xmodem(&bytes[..34]);
    if u16::from_be_bytes([bytes[34], bytes[35]]) != expected_crc {
        return Err(TonAddressError(
            "the user-friendly address fails its CRC16 checksum (a typo?)",
        ));
    }
    let flags = bytes[0];
    let testnet_only = flags & FLAG_TESTNET_ONLY != 0;
    let tag = flags & !FLAG_TESTNET_ONLY;
    if tag != FLAG_BOUNCEABLE && tag != FLAG_NON_BOUNCEABLE {
        return Err(TonAddressError(
            "the user-friendly address has an unknown flags byte",
        ));
    }
    let workchain = i32::from(i8::from_be_bytes([bytes[1]]));
    let mut account_id = [0_u8; 32];
    account_id.copy_from_slice(&bytes[2..34]);
    Ok(ParsedTonAddress {
        address: TonAddress::new(workchain, account_id),
        testnet_only,
    })
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum of user-friendly addresses.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes the user-friendly form, to test decoding against independent inputs.
    fn user_friendly(flags: u8, address: &TonAddress) -> [u8; 36] {
        let mut bytes = [0_u8; 36];
        bytes[0] = flags;
        bytes[1] = address.workchain().to_be_bytes()[3];
        bytes[2..34].copy_from_slice(address.account_id());
        let crc = crc16_xmodem(&bytes[..34]);
        bytes[34..].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn crc16_xmodem_matches_the_standard_check_value() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    #[test]
    fn parses_a_known_mainnet_address_in_every_form() {
        // The TON Foundation's well-known basechain address, in its published forms.
        let raw = "0:83dfd552e63729b472fcbcc8c45ebcc6691702558b68ec7527e1ba403a0f31a8";
        let bounceable = "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N";
        let non_bounceable = "UQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqEBI";
        let expected: TonAddress = raw.parse().expect("raw form parses");
        assert_eq!(expected.to_string(), raw);
        for form in [bounceable, non_bounceable] {
            assert_eq!(form.parse::<TonAddress>(), Ok(expected), "{form}");
        }
    }

    #[test]
    fn round_trips_both_alphabets_and_the_testnet_flag() {
        let address = TonAddress::new(-1, [0xfb; 32]);
        let bytes = user_friendly(FLAG_BOUNCEABLE | FLAG_TESTNET_ONLY, &address);
        let standard = STANDARD.encode(bytes);
        let url_safe = URL_SAFE.encode(bytes);
        assert_ne!(standard, url_safe);
        for form in [standard, url_safe] {
            assert_eq!(
                parse(&form),
                Ok(ParsedTonAddress {
                    address,
                    testnet_only: true
                })
            );
        }
    }

    #[test]
    fn rejects_typos_and_malformed_input() {
        let address = TonAddress::new(0, [7; 32]);
        let mut bytes = user_friendly(FLAG_BOUNCEABLE, &address);
        bytes[10] ^= 1;
        let corrupted = URL_SAFE.encode(bytes);
        assert!(parse(&corrupted)
            .expect_err("should be rejected")
            .0
            .contains("CRC16"));
        let bad_flags = URL_SAFE.encode(user_friendly(0x22, &address));
        assert!(parse(&bad_flags)
            .expect_err("should be rejected")
            .0
            .contains("flags"));
        for bad in [
            "",
            "0:",
            "0:abc",
            "x:00",
            "0:zz",
            "EQ",
            &"A".repeat(48),
            &"é".repeat(24),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
