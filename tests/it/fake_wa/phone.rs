//! The fake phone's half of pairing: from a scanned QR string, an
//! `ADVSignedDeviceIdentityHMAC` the companion accepts (signed by a fresh
//! account key over the companion's identity key, authenticated with the adv
//! secret from the QR).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::waproto::whatsapp as wa;

/// Prefix of the account signature over a companion's identity.
const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];

/// What a QR code tells the phone.
pub struct Scan {
    pub pairing_ref: String,
    pub identity_pub: [u8; 32],
    pub adv_secret: [u8; 32],
}

impl Scan {
    /// Parses `ref,noiseKey,identityKey,advSecret[,clientType]`.
    pub fn parse(qr: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = qr.split(',').collect();
        anyhow::ensure!(parts.len() >= 4, "not a WhatsApp QR string: {qr}");
        let b64 = |s: &str| -> anyhow::Result<[u8; 32]> {
            base64::engine::general_purpose::STANDARD
                .decode(s)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("a QR key is not 32 bytes"))
        };
        Ok(Self {
            pairing_ref: parts[0].to_string(),
            identity_pub: b64(parts[2])?,
            adv_secret: b64(parts[3])?,
        })
    }

    /// The `<device-identity>` content of `<pair-success>` for device number `device`.
    pub fn signed_device_identity(&self, device: u32) -> anyhow::Result<Vec<u8>> {
        let account = KeyPair::generate(&mut rand010::rng());
        let details = wa::ADVDeviceIdentity {
            raw_id: Some(rand::random()),
            timestamp: Some(chrono::Utc::now().timestamp() as u64),
            key_index: Some(device),
            ..Default::default()
        }
        .encode_to_vec();
        let mut signed = Vec::new();
        signed.extend_from_slice(&ACCOUNT_SIGNATURE_PREFIX);
        signed.extend_from_slice(&details);
        signed.extend_from_slice(&self.identity_pub);
        let signature = account
            .private_key
            .calculate_signature(&signed, &mut rand010::rng())
            .map_err(|e| anyhow::anyhow!("sign: {e}"))?;
        let identity = wa::ADVSignedDeviceIdentity {
            details: Some(details),
            account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
            account_signature: Some(signature.to_vec()),
            ..Default::default()
        }
        .encode_to_vec();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.adv_secret)?;
        mac.update(&identity);
        Ok(wa::ADVSignedDeviceIdentityHMAC {
            details: Some(identity),
            hmac: Some(mac.finalize().into_bytes().to_vec()),
            ..Default::default()
        }
        .encode_to_vec())
    }
}
