//! Sealing entries for shared stores: AES-256-GCM with a key ring.
//!
//! The envelope is `version (1) ‖ key id (4) ‖ nonce (12) ‖ ciphertext+tag`.
//! The associated data binds the format version and the store key, so an
//! entry copied under another key, or replayed from another format, fails
//! to open. Every write draws a fresh random nonce; with 96-bit random
//! nonces one key stays far inside GCM's bounds for billions of writes.

use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::HmacKey;
use crate::store::StoreKey;

const VERSION: u8 = 1;
const AAD_DOMAIN: &[u8] = b"tokencache/sealed/v1";
const HEADER_LEN: usize = 1 + 4 + 12;
const TAG_LEN: usize = 16;

/// Why a sealed entry could not be opened. The proxy treats each as a miss
/// (logged and counted), never as an error to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Too short, or an unknown format version.
    #[error("not a sealed entry")]
    Malformed,
    /// Sealed with a key that is not in the ring.
    #[error("sealed with an unknown key")]
    UnknownKey,
    /// The tag did not verify: tampered, or moved to another store key.
    #[error("sealed entry failed authentication")]
    Tampered,
}

/// One AES-256 key with its id.
#[derive(Clone)]
pub struct EncryptionKey {
    id: u32,
    bytes: Zeroizing<[u8; 32]>,
    cipher: Aes256Gcm,
}

impl EncryptionKey {
    /// A key from its 32 bytes. Its id is derived from it (the first four
    /// bytes of a domain-separated SHA-256), so the ring needs no
    /// configuration beyond the keys themselves.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"tokencache/key-id/v1")
            .chain_update(bytes)
            .finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // A 32-byte slice is a valid AES-256 key.
        #[allow(clippy::expect_used)]
        let cipher = Aes256Gcm::new_from_slice(&bytes).expect("32 bytes is an AES-256 key");
        Self {
            id,
            bytes: Zeroizing::new(bytes),
            cipher,
        }
    }

    /// The key id written into envelopes.
    #[must_use]
    pub const fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey(id={:08x}, [redacted])", self.id)
    }
}

/// The keys a proxy seals and opens with: writes use the active key, reads
/// accept any key in the ring, so keys rotate without a flag day.
#[derive(Clone, Debug)]
pub struct KeyRing {
    active: EncryptionKey,
    previous: Vec<EncryptionKey>,
}

impl KeyRing {
    /// A ring writing with `active` and still reading `previous`.
    #[must_use]
    pub fn new(active: EncryptionKey, previous: Vec<EncryptionKey>) -> Self {
        let previous = previous
            .into_iter()
            .filter(|key| key.id != active.id)
            .collect();
        Self { active, previous }
    }

    /// The active key's id.
    #[must_use]
    pub const fn active_id(&self) -> u32 {
        self.active.id
    }

    /// Seals `plaintext` for `store_key`.
    #[must_use]
    pub fn seal(&self, store_key: &StoreKey, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let aad = associated_data(store_key);
        // Encryption fails only for messages beyond GCM's 64 GiB limit; a
        // token entry is kilobytes.
        #[allow(clippy::expect_used)]
        let ciphertext = self
            .active
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("token entries are far below GCM's message limit");
        let mut sealed = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&self.active.id.to_be_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens an entry sealed for `store_key` by any key in the ring.
    ///
    /// # Errors
    /// [`SealError`] when it is malformed, sealed with an unknown key, or
    /// fails authentication.
    pub fn open(
        &self,
        store_key: &StoreKey,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let id = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
        let key = std::iter::once(&self.active)
            .chain(&self.previous)
            .find(|key| key.id == id)
            .ok_or(SealError::UnknownKey)?;
        let nonce = Nonce::try_from(&sealed[5..HEADER_LEN]).map_err(|_| SealError::Malformed)?;
        let aad = associated_data(store_key);
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }

    /// A cache-key HMAC key derived from the active key, for fleets that
    /// configure only an encryption key. (Rotating the active key then
    /// changes every cache key once; configure the HMAC key explicitly to
    /// avoid that.)
    #[must_use]
    pub fn derived_hmac_key(&self) -> HmacKey {
        // HMAC takes keys of any length.
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&*self.active.bytes)
            .expect("HMAC takes keys of any length");
        mac.update(b"tokencache/cache-key-hmac/v1");
        HmacKey::from_bytes(mac.finalize().into_bytes().into())
    }
}

fn associated_data(store_key: &StoreKey) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 1 + store_key.as_str().len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.push(VERSION);
    aad.extend_from_slice(store_key.as_str().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::CacheKey;
    use proptest::prelude::*;

    fn store_key(n: u8) -> StoreKey {
        StoreKey::of(&CacheKey::from_bytes([n; 32]))
    }

    fn ring(active: u8, previous: &[u8]) -> KeyRing {
        KeyRing::new(
            EncryptionKey::from_bytes([active; 32]),
            previous
                .iter()
                .map(|b| EncryptionKey::from_bytes([*b; 32]))
                .collect(),
        )
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let ring = ring(1, &[]);
        let a = ring.seal(&store_key(1), b"entry");
        let b = ring.seal(&store_key(1), b"entry");
        assert_ne!(a, b, "a fresh nonce per write");
        assert_eq!(&*ring.open(&store_key(1), &a).unwrap(), b"entry");
        assert!(
            !a.windows(5).any(|w| w == b"entry"),
            "no plaintext in the envelope"
        );
    }

    #[test]
    fn bound_to_its_store_key() {
        let ring = ring(1, &[]);
        let sealed = ring.seal(&store_key(1), b"entry");
        assert_eq!(ring.open(&store_key(2), &sealed), Err(SealError::Tampered));
    }

    #[test]
    fn tampering_is_detected() {
        let ring = ring(1, &[]);
        let sealed = ring.seal(&store_key(1), b"entry");
        for index in [HEADER_LEN, sealed.len() - 1, 6] {
            let mut bad = sealed.clone();
            bad[index] ^= 1;
            assert_eq!(
                ring.open(&store_key(1), &bad),
                Err(SealError::Tampered),
                "{index}"
            );
        }
        assert_eq!(
            ring.open(&store_key(1), &sealed[..10]),
            Err(SealError::Malformed)
        );
        let mut other_version = sealed.clone();
        other_version[0] = 2;
        assert_eq!(
            ring.open(&store_key(1), &other_version),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn rotation_reads_old_entries() {
        let old = ring(1, &[]);
        let sealed_old = old.seal(&store_key(1), b"old");
        let rotated = ring(2, &[1]);
        assert_eq!(&*rotated.open(&store_key(1), &sealed_old).unwrap(), b"old");
        let sealed_new = rotated.seal(&store_key(1), b"new");
        assert_eq!(&sealed_new[1..5], &rotated.active_id().to_be_bytes());
        // The old ring cannot read the new key's entries.
        assert_eq!(
            old.open(&store_key(1), &sealed_new),
            Err(SealError::UnknownKey)
        );
        // A ring without the old key no longer reads its entries.
        assert_eq!(
            ring(2, &[]).open(&store_key(1), &sealed_old),
            Err(SealError::UnknownKey)
        );
    }

    #[test]
    fn debug_is_redacted_and_hmac_key_is_derived() {
        let ring = ring(7, &[]);
        assert!(format!("{ring:?}").contains("[redacted]"));
        assert_eq!(
            ring.derived_hmac_key().secret(),
            self::ring(7, &[3]).derived_hmac_key().secret()
        );
        assert_ne!(
            ring.derived_hmac_key().secret(),
            self::ring(8, &[]).derived_hmac_key().secret()
        );
    }

    proptest! {
        #[test]
        fn seal_open_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), key in any::<u8>()) {
            let ring = ring(9, &[]);
            let sealed = ring.seal(&store_key(key), &plaintext);
            prop_assert_eq!(&*ring.open(&store_key(key), &sealed).unwrap(), &plaintext);
        }

        #[test]
        fn garbage_never_opens(garbage in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(ring(9, &[]).open(&store_key(1), &garbage).is_err());
        }
    }
}
