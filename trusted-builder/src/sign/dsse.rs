//! DSSE envelopes: the format is `airlock_verify::dsse` (re-exported here); signing one is
//! here, beside the keys.

use base64::Engine as _;

pub use airlock_verify::dsse::*;

use super::{SignError, Signer};

/// Signs `body` as `payload_type` with `signer` (the same key as image signatures).
pub async fn sign_envelope<S: Signer>(
    signer: &S,
    payload_type: &str,
    body: &[u8],
) -> Result<Envelope, SignError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = signer.sign(&pae(payload_type, body)).await?;
    Ok(Envelope {
        payload_type: payload_type.to_owned(),
        payload: b64.encode(body),
        signatures: vec![EnvelopeSignature {
            keyid: Some(signer.key_id()),
            sig: b64.encode(sig),
        }],
    })
}
