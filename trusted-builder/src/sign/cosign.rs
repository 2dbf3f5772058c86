//! cosign image signatures: the payload format is `airlock_verify::cosign` (re-exported here);
//! signing one is here, beside the keys.

use std::collections::BTreeMap;

pub use airlock_verify::cosign::*;

use crate::oci::{Blob, Descriptor};

use super::{SignError, Signer};

/// Signs `payload` and returns it as a `.sig` layer: the blob is the payload
/// bytes, the signature rides in the [`ANNOTATION_SIGNATURE`] annotation.
pub async fn signature_layer<S: Signer>(signer: &S, payload: &[u8]) -> Result<Blob, SignError> {
    use base64::Engine as _;
    let sig = signer.sign(payload).await?;
    let mut descriptor = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, payload);
    descriptor.annotations = Some(BTreeMap::from([(
        ANNOTATION_SIGNATURE.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(sig),
    )]));
    Ok(Blob {
        descriptor,
        data: payload.to_vec(),
    })
}
