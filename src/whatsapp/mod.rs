//! WhatsApp sessions: the engine interface, the per-instance supervisor, the
//! real engine (whatsapp-rust), the simulated network, media fetching and QR rendering.

pub mod engine;
pub mod groups;
pub mod media;
pub mod qr;
pub mod real;
pub mod sim;
pub mod sim_groups;
pub mod supervisor;
pub mod vault;

pub use engine::{Engine, EngineEvent, EngineSession, MediaKind, OutgoingMedia, Receipt};
pub use supervisor::{ConnState, SessionStatus, Sessions};

pub use crate::ids::{BadRecipient, Jid};
