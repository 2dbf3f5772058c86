//! DSSE envelopes (secure-systems-lab/dsse): what attestations are wrapped in.
//!
//! The signature covers the pre-authentication encoding (PAE) of the payload
//! type and body, never the envelope JSON, so the type cannot be swapped and
//! no JSON canonicalisation is needed. PAE is the one the pass records use
//! ([`airlock_pipeline::record::pae`]).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// `payloadType` of an in-toto statement.
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// Media type of a DSSE envelope stored as an OCI layer (cosign attestations).
pub const MEDIA_TYPE_DSSE: &str = "application/vnd.dsse.envelope.v1+json";

/// A DSSE envelope. All three fields are required by the spec, even if empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// How to interpret the payload (e.g. [`PAYLOAD_TYPE_IN_TOTO`]).
    pub payload_type: String,
    /// base64 of the serialized body.
    pub payload: String,
    /// One or more signatures over PAE(payloadType, body).
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Unauthenticated hint of which key signed; never used for trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// base64 of the signature.
    pub sig: String,
}

/// Why an envelope could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not a DSSE envelope, or a field is not valid base64.
    #[error("malformed DSSE envelope: {0}")]
    Malformed(String),
}

/// The bytes a DSSE signature covers.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    airlock_pipeline::record::pae(payload_type, body)
}

/// Decodes base64 in either alphabet the DSSE spec allows, padded or not.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, EnvelopeError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
        .ok_or_else(|| EnvelopeError::Malformed("invalid base64".into()))
}

impl Envelope {
    /// Parses envelope JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// Serializes the envelope (what is stored as the `.att` layer).
    pub fn to_json(&self) -> Result<Vec<u8>, EnvelopeError> {
        serde_json::to_vec(self).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The decoded body, unverified: pass it to a verifier, never to a parser first.
    pub fn body(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode_base64(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pae_matches_the_spec_test_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn both_base64_alphabets_decode() {
        assert_eq!(decode_base64("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_base64("not base64!").is_err());
    }
}
