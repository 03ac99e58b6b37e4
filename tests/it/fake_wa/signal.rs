//! A fake contact's device: real Signal work with the crate's own libsignal
//! types (identity, signed prekey, one-time prekeys, sessions built from a
//! fetched bundle, `pkmsg` first and `msg` after), over small in-memory
//! stores written here.

use std::collections::HashMap;

use async_trait::async_trait;
use whatsapp_rust::wacore::libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySignalMessage, PreKeyStore, ProtocolAddress, PublicKey, SessionRecord, SessionStore,
    SignalMessage, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore,
    Timestamp, UsePQRatchet, message_decrypt, message_encrypt, process_prekey_bundle,
};

type SignalResult<T> = Result<T, SignalProtocolError>;

/// One-time prekeys a contact offers.
const ONE_TIME_PREKEYS: u32 = 20;

#[derive(Default)]
struct Sessions(HashMap<String, SessionRecord>);

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(&address.to_string()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(&address.to_string()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.to_string(), record);
        Ok(())
    }
}

struct Identities {
    own: IdentityKeyPair,
    registration_id: u32,
    /// Trust on first use, like the app.
    known: HashMap<String, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.own.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        match self.known.insert(address.to_string(), *identity) {
            Some(old) if old != *identity => Ok(IdentityChange::ReplacedExisting),
            _ => Ok(IdentityChange::NewOrUnchanged),
        }
    }

    async fn is_trusted_identity(
        &self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(self
            .known
            .get(&address.to_string())
            .is_none_or(|k| k == identity))
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(&address.to_string()).copied())
    }
}

#[derive(Default)]
struct PreKeys(HashMap<u32, PreKeyRecord>);

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(&mut self, id: PreKeyId, record: &PreKeyRecord) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(id));
        Ok(())
    }
}

struct SignedPreKeys(SignedPreKeyRecord);

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        if self.0.id()? == id {
            Ok(self.0.clone())
        } else {
            Err(SignalProtocolError::InvalidSignedPreKeyId)
        }
    }

    async fn save_signed_pre_key(
        &mut self,
        _id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0 = record.clone();
        Ok(())
    }
}

/// A device's Signal state: its keys and its sessions with other devices.
pub struct Device {
    sessions: Sessions,
    identities: Identities,
    prekeys: PreKeys,
    signed: SignedPreKeys,
    /// One-time prekeys not yet handed out by the server.
    unclaimed: Vec<u32>,
}

/// A bundle as the server hands it out: everything but the private keys.
pub struct PublicBundle {
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed_id: u32,
    pub signed_public: [u8; 32],
    pub signed_signature: Vec<u8>,
    pub one_time: Option<(u32, [u8; 32])>,
}

impl PublicBundle {
    pub fn to_bundle(&self, device: u32) -> anyhow::Result<PreKeyBundle> {
        let key = |b: &[u8]| {
            PublicKey::from_djb_public_key_bytes(b).map_err(|e| anyhow::anyhow!("a bad key: {e}"))
        };
        let one_time = match &self.one_time {
            Some((id, public)) => Some((PreKeyId::from(*id), key(public)?)),
            None => None,
        };
        Ok(PreKeyBundle::new(
            self.registration_id,
            device.into(),
            one_time,
            self.signed_id.into(),
            key(&self.signed_public)?,
            self.signed_signature.clone(),
            IdentityKey::new(key(&self.identity)?),
        )?)
    }
}

fn raw(key: &PublicKey) -> [u8; 32] {
    key.public_key_bytes()
        .try_into()
        .expect("a Curve25519 key is 32 bytes")
}

impl Device {
    /// A fresh device: identity, a signed prekey and some one-time prekeys.
    pub fn new() -> Self {
        let mut rng = rand010::rng();
        let own = IdentityKeyPair::generate(&mut rng);
        let signed_pair = KeyPair::generate(&mut rng);
        let signature = own
            .private_key()
            .calculate_signature(&signed_pair.public_key.serialize(), &mut rng)
            .expect("sign the signed prekey");
        let signed = SignedPreKeyRecord::new(
            SignedPreKeyId::from(1),
            Timestamp::from_epoch_millis(chrono::Utc::now().timestamp_millis() as u64),
            &signed_pair,
            &signature,
        );
        let mut prekeys = PreKeys::default();
        for id in 1..=ONE_TIME_PREKEYS {
            let pair = KeyPair::generate(&mut rng);
            prekeys.0.insert(id, PreKeyRecord::new(id.into(), &pair));
        }
        Self {
            sessions: Sessions::default(),
            identities: Identities {
                own,
                registration_id: rand::random::<u32>() & 0x3fff,
                known: HashMap::new(),
            },
            prekeys,
            signed: SignedPreKeys(signed),
            unclaimed: (1..=ONE_TIME_PREKEYS).rev().collect(),
        }
    }

    /// A bundle for the server to hand out, claiming one one-time prekey.
    pub fn claim_bundle(&mut self) -> PublicBundle {
        let signed = &self.signed.0;
        let one_time = self.unclaimed.pop().map(|id| {
            let public = self.prekeys.0[&id].public_key().expect("a prekey");
            (id, raw(&public))
        });
        PublicBundle {
            registration_id: self.identities.registration_id,
            identity: raw(self.identities.own.public_key()),
            signed_id: signed.id().expect("an id").into(),
            signed_public: raw(&signed.public_key().expect("a key")),
            signed_signature: signed.signature().expect("a signature"),
            one_time,
        }
    }

    /// Whether this device has a session with `peer`.
    pub fn has_session(&self, peer: &ProtocolAddress) -> bool {
        self.sessions.0.contains_key(&peer.to_string())
    }

    /// Starts a session with `peer` from its bundle.
    pub async fn start_session(
        &mut self,
        peer: &ProtocolAddress,
        bundle: &PreKeyBundle,
    ) -> anyhow::Result<()> {
        process_prekey_bundle(
            peer,
            &mut self.sessions,
            &mut self.identities,
            bundle,
            &mut rand010::make_rng::<rand010::rngs::StdRng>(),
            UsePQRatchet::No,
        )
        .await?;
        Ok(())
    }

    /// Encrypts for `peer`: `("pkmsg" | "msg", ciphertext)`.
    pub async fn encrypt(
        &mut self,
        peer: &ProtocolAddress,
        plaintext: &[u8],
    ) -> anyhow::Result<(&'static str, Vec<u8>)> {
        let message =
            message_encrypt(plaintext, peer, &mut self.sessions, &mut self.identities).await?;
        Ok(match message {
            CiphertextMessage::PreKeySignalMessage(m) => ("pkmsg", m.serialized().to_vec()),
            CiphertextMessage::SignalMessage(m) => ("msg", m.serialized().to_vec()),
            other => anyhow::bail!("unexpected ciphertext {:?}", other.message_type()),
        })
    }

    /// Decrypts an `<enc type=kind>` from `peer`.
    pub async fn decrypt(
        &mut self,
        peer: &ProtocolAddress,
        kind: &str,
        ciphertext: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let message = match kind {
            "pkmsg" => {
                CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(ciphertext)?)
            }
            "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(ciphertext)?),
            other => anyhow::bail!("an <enc type={other}> a contact cannot read"),
        };
        let result = message_decrypt(
            &message,
            peer,
            &mut self.sessions,
            &mut self.identities,
            &mut self.prekeys,
            &self.signed,
            &mut rand010::make_rng::<rand010::rngs::StdRng>(),
            UsePQRatchet::No,
        )
        .await?;
        if let Some(id) = result.consumed_prekey_id {
            self.prekeys.0.remove(&u32::from(id));
        }
        Ok(result.plaintext)
    }
}
