//! Pairing by phone-number code, the server's and the phone's half: the
//! client's `companion_hello` is answered with a pairing ref; when the test
//! "types the code into the phone" ([`FakeWa::enter_code`]) the phone opens
//! the client's wrapped ephemeral key with the code, sends `primary_hello`
//! with its own (wrapped with the same code) and its identity key; the
//! client's `companion_finish` carries a key bundle the phone decrypts to
//! derive the new adv secret, with which it signs `<pair-success>` exactly
//! as after a QR scan. A wrong code leaves the phone unable to open the
//! bundle, as on a real phone.

use std::sync::Arc;

use whatsapp_rust::NodeBuilder;
use whatsapp_rust::wacore::crypto::hkdf_sha256_into;
use whatsapp_rust::wacore::libsignal::crypto::aes_256_gcm_decrypt;
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PublicKey};
use whatsapp_rust::wacore::pair_code::PairCodeUtils;
use whatsapp_rust::wacore_binary::{Node, NodeContent};

use super::{Conn, FakeWa, Inner, SERVER, attr, children, iq_result, show};

/// A code flow the server knows, by phone.
pub(super) struct Pending {
    conn: u64,
    pairing_ref: Vec<u8>,
    /// The client's ephemeral public key, wrapped with the code.
    wrapped_companion: Vec<u8>,
    /// Set once the phone "typed" the code.
    phone_side: Option<PhoneSide>,
}

/// What the phone holds after the code was typed.
struct PhoneSide {
    companion_ephemeral: [u8; 32],
    ephemeral: KeyPair,
    identity: KeyPair,
}

fn bytes_of(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn child_bytes<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    children(node)
        .iter()
        .find(|c| c.tag == tag)
        .and_then(bytes_of)
}

/// `<iq xmlns="md" type="set"><link_code_companion_reg stage=…>`.
pub(super) fn iq(server: &Inner, conn: &Conn, node: &Node, reg: &Node) -> Vec<Node> {
    let id = attr(node, "id").unwrap_or_default();
    let phone = attr(reg, "jid")
        .and_then(|j| j.split('@').next().map(str::to_owned))
        .unwrap_or_default();
    match attr(reg, "stage").as_deref() {
        Some("companion_hello") => {
            let Some(wrapped) =
                child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
                    .filter(|b| b.len() == 80)
            else {
                server.problem(format!("a companion_hello without its key: {}", show(node)));
                return vec![iq_result(&id)];
            };
            let pairing_ref = format!("fake-ref-{}", uuid::Uuid::new_v4().simple()).into_bytes();
            server.codes.lock().unwrap().insert(
                phone,
                Pending {
                    conn: conn.id,
                    pairing_ref: pairing_ref.clone(),
                    wrapped_companion: wrapped.to_vec(),
                    phone_side: None,
                },
            );
            server.changed.notify_waiters();
            vec![
                NodeBuilder::new("iq")
                    .attrs([
                        ("from", SERVER.to_string()),
                        ("type", "result".to_string()),
                        ("id", id),
                    ])
                    .children([NodeBuilder::new("link_code_companion_reg")
                        .attr("stage", "companion_hello")
                        .children([NodeBuilder::new("link_code_pairing_ref")
                            .bytes(pairing_ref)
                            .build()])
                        .build()])
                    .build(),
            ]
        }
        Some("companion_finish") => match finish(server, &phone, reg) {
            Ok(()) => vec![iq_result(&id)],
            Err(e) => {
                server.problem(format!("a companion_finish the phone cannot open: {e:#}"));
                vec![super::iq_error(&id, 400, "bad-request")]
            }
        },
        _ => {
            server.problem(format!(
                "a pairing-code stage the fake does not know: {}",
                show(node)
            ));
            vec![iq_result(&id)]
        }
    }
}

/// The phone opens the key bundle, derives the adv secret and sends
/// `<pair-success>` (then the client's answer brings the 515 restart).
fn finish(server: &Inner, phone: &str, reg: &Node) -> anyhow::Result<()> {
    let (conn_id, pairing_ref, side) = {
        let mut codes = server.codes.lock().unwrap();
        let pending = codes
            .remove(phone)
            .ok_or_else(|| anyhow::anyhow!("no code flow for {phone}"))?;
        let side = pending
            .phone_side
            .ok_or_else(|| anyhow::anyhow!("the code was never typed"))?;
        (pending.conn, pending.pairing_ref, side)
    };
    anyhow::ensure!(
        child_bytes(reg, "link_code_pairing_ref") == Some(&pairing_ref[..]),
        "the ref does not match"
    );
    let wrapped = child_bytes(reg, "link_code_pairing_wrapped_key_bundle")
        .ok_or_else(|| anyhow::anyhow!("no key bundle"))?;
    anyhow::ensure!(wrapped.len() > 44 + 16, "a key bundle too short");
    let companion_eph = PublicKey::from_djb_public_key_bytes(&side.companion_ephemeral)?;
    let ephemeral_shared = side
        .ephemeral
        .private_key
        .calculate_agreement(&companion_eph)?;
    let (salt, rest) = wrapped.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let mut key = [0u8; 32];
    hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|e| anyhow::anyhow!("hkdf: {e:?}"))?;
    let iv: [u8; 12] = iv.try_into()?;
    let mut bundle = Vec::new();
    aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|e| anyhow::anyhow!("the bundle does not open (a wrong code?): {e:?}"))?;
    anyhow::ensure!(bundle.len() == 96, "a bundle of {} bytes", bundle.len());
    anyhow::ensure!(
        bundle[32..64] == *side.identity.public_key.public_key_bytes(),
        "the bundle names another primary"
    );
    let companion_identity: [u8; 32] = bundle[..32].try_into()?;
    anyhow::ensure!(
        child_bytes(reg, "companion_identity_public") == Some(&companion_identity[..]),
        "the identity in the bundle is not the one announced"
    );
    let identity_shared = side
        .identity
        .private_key
        .calculate_agreement(&PublicKey::from_djb_public_key_bytes(&companion_identity)?)?;
    let mut secret_input = Vec::with_capacity(96);
    secret_input.extend_from_slice(&ephemeral_shared);
    secret_input.extend_from_slice(&identity_shared);
    secret_input.extend_from_slice(&bundle[64..96]);
    let mut adv_secret = [0u8; 32];
    hkdf_sha256_into(&secret_input, None, b"adv_secret", &mut adv_secret)
        .map_err(|e| anyhow::anyhow!("hkdf: {e:?}"))?;
    let conn = server
        .conns
        .lock()
        .unwrap()
        .get(&conn_id)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the connection that asked for the code is gone"))?;
    let scan = super::phone::Scan {
        pairing_ref: String::from_utf8_lossy(&pairing_ref).into_owned(),
        identity_pub: companion_identity,
        adv_secret,
    };
    super::pair_success(server, &conn, &scan, phone)
}

impl FakeWa {
    /// Waits until a client asked for a pairing code for `phone`.
    pub async fn wait_code_request(&self, phone: &str) {
        loop {
            let notified = self.inner.changed.notified();
            if self.inner.codes.lock().unwrap().contains_key(phone) {
                return;
            }
            notified.await;
        }
    }

    /// The phone `phone` types `code` (as shown, `ABCD-EFGH`): it sends
    /// `primary_hello` to the client that asked for a code for it.
    pub async fn enter_code(&self, phone: &str, code: &str) -> anyhow::Result<()> {
        let code: String = code.chars().filter(|c| *c != '-').collect();
        let (conn_id, pairing_ref, wrapped) = {
            let codes = self.inner.codes.lock().unwrap();
            let p = codes
                .get(phone)
                .ok_or_else(|| anyhow::anyhow!("no client asked for a code for {phone}"))?;
            (p.conn, p.pairing_ref.clone(), p.wrapped_companion.clone())
        };
        // The same PBKDF2 + AES-CTR unwraps either side's key.
        let code2 = code.clone();
        let companion_ephemeral = tokio::task::spawn_blocking(move || {
            PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, &code2)
        })
        .await??;
        let ephemeral = KeyPair::generate(&mut rand010::rng());
        let identity = KeyPair::generate(&mut rand010::rng());
        let eph_pub: [u8; 32] = ephemeral.public_key.public_key_bytes().try_into()?;
        let wrapped_primary = tokio::task::spawn_blocking(move || {
            PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, &code)
        })
        .await?;
        let notification = NodeBuilder::new("notification")
            .attrs([
                ("from", SERVER.to_string()),
                ("type", "link_code_companion_reg".to_string()),
                ("id", format!("lc-{}", uuid::Uuid::new_v4().simple())),
                ("t", chrono::Utc::now().timestamp().to_string()),
            ])
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(wrapped_primary.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(identity.public_key.public_key_bytes().to_vec())
                        .build(),
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(pairing_ref)
                        .build(),
                ])
                .build()])
            .build();
        if let Some(p) = self.inner.codes.lock().unwrap().get_mut(phone) {
            p.phone_side = Some(PhoneSide {
                companion_ephemeral,
                ephemeral,
                identity,
            });
        }
        let conn: Option<Arc<Conn>> = self.inner.conns.lock().unwrap().get(&conn_id).cloned();
        conn.ok_or_else(|| anyhow::anyhow!("the connection that asked for the code is gone"))?
            .out
            .send(notification)
            .map_err(|_| anyhow::anyhow!("the connection closed"))?;
        Ok(())
    }
}
