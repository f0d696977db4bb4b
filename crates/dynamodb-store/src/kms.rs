//! The sealing key from AWS KMS: a data key whose ciphertext is kept on
//! disk and decrypted through KMS at start-up (envelope encryption).
//!
//! The proxy reads `--encryption-key-kms FILE` (the base64 ciphertext blob)
//! and calls [`decrypt_data_key`]; only a principal allowed `kms:Decrypt`
//! on the key can turn the file into the key.

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use tokencache_core::StoreError;
use zeroize::Zeroizing;

use crate::config::DynamoDbConfig;
use crate::error::from_sdk;

/// Decrypts a KMS data key (the `CiphertextBlob` of `GenerateDataKey`, raw
/// bytes, not base64) into the 32-byte AES-256 key it wraps.
///
/// The plaintext buffer the SDK hands back is zeroized here; the returned
/// array is the caller's to zeroize (wrap it in
/// [`zeroize::Zeroizing`] or move it straight into a key type that does).
///
/// # Errors
/// [`StoreError::Refused`] when KMS refuses (no `kms:Decrypt`, a disabled
/// key, a blob from another key or account), [`StoreError::Unavailable`]
/// when KMS cannot be reached, [`StoreError::Protocol`] when the data key
/// is not 32 bytes.
pub async fn decrypt_data_key(
    ciphertext_blob: &[u8],
    config: &DynamoDbConfig,
) -> Result<[u8; 32], StoreError> {
    let client = Client::new(&config.load_for_admin().await?);
    let output = client
        .decrypt()
        .ciphertext_blob(Blob::new(ciphertext_blob))
        .send()
        .await
        .map_err(|error| from_sdk("Decrypt", &error))?;
    let plaintext = Zeroizing::new(output.plaintext.map(Blob::into_inner).unwrap_or_default());
    to_key(&plaintext, "Decrypt")
}

/// Asks KMS for a new AES-256 data key under `key_id` (a key id, ARN or
/// `alias/…`): its ciphertext blob, to store (base64) in the file the proxy
/// reads, and its plaintext, for tests and for checking a set-up.
///
/// The same as `aws kms generate-data-key --key-spec AES_256`.
///
/// # Errors
/// As [`decrypt_data_key`], for `kms:GenerateDataKey`.
pub async fn generate_data_key(
    key_id: &str,
    config: &DynamoDbConfig,
) -> Result<(Vec<u8>, [u8; 32]), StoreError> {
    let client = Client::new(&config.load_for_admin().await?);
    let output = client
        .generate_data_key()
        .key_id(key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .map_err(|error| from_sdk("GenerateDataKey", &error))?;
    let plaintext = Zeroizing::new(output.plaintext.map(Blob::into_inner).unwrap_or_default());
    let key = to_key(&plaintext, "GenerateDataKey")?;
    let ciphertext = output
        .ciphertext_blob
        .map(Blob::into_inner)
        .filter(|blob| !blob.is_empty())
        .ok_or_else(|| StoreError::Protocol("GenerateDataKey: no ciphertext blob".into()))?;
    Ok((ciphertext, key))
}

fn to_key(plaintext: &[u8], operation: &str) -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    if plaintext.len() != key.len() {
        return Err(StoreError::Protocol(format!(
            "{operation}: the data key is {} bytes, not 32 (AES_256)",
            plaintext.len()
        )));
    }
    key.copy_from_slice(plaintext);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_are_32_bytes() {
        assert_eq!(to_key(&[7; 32], "Decrypt").unwrap(), [7; 32]);
        let error = to_key(&[7; 16], "Decrypt").unwrap_err();
        assert!(matches!(error, StoreError::Protocol(_)));
        assert!(error.to_string().contains("16 bytes, not 32"));
    }
}
