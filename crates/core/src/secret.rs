//! Secret newtypes: redacted in `Debug`, no `Display`, wiped on drop.

use std::fmt;

use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// An OAuth client secret.
///
/// Its value is reached only through [`ClientSecret::secret`], so it cannot
/// end up in a log line or an error message by accident.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret value itself.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// The 32-byte key of the cache-key HMAC.
///
/// A fleet sharing a store must share this key (so equal requests map to
/// equal keys everywhere); a process with only a memory store uses a random
/// one, so its keys mean nothing outside it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HmacKey([u8; 32]);

impl HmacKey {
    /// A key from raw bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's random source.
    #[must_use]
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        // ThreadRng is a CSPRNG seeded from the operating system.
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key bytes.
    #[must_use]
    pub fn secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = ClientSecret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "ClientSecret([redacted])");
        assert_eq!(secret.secret(), "hunter2");
        let key = HmacKey::from_bytes([0x41; 32]);
        assert!(!format!("{key:?}").contains('A'));
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(HmacKey::random().secret(), HmacKey::random().secret());
    }
}
