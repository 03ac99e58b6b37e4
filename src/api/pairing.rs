//! `POST /api/instances/{instanceId}/pair-code`: pairing by phone number, as
//! well as by QR code. The instance asks WhatsApp for an 8-character code
//! that the user types into the phone (WhatsApp > Linked devices > Link a
//! device > Link with phone number instead).

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{Object, OpenApi};

use crate::api::AppState;
use crate::error::{ApiError, ApiResult};
use crate::ids::Jid;
use crate::whatsapp::supervisor::PairCodeError;

use super::security::{Tag, owned_instance};
use super::types::Text;

/// The phone number to pair.
#[derive(Object)]
#[oai(example)]
pub struct PairCodeRequest {
    /// The account's phone number in international form, digits only or
    /// with `+`, spaces or dashes (7–15 digits).
    pub phone: Text,
}

impl Example for PairCodeRequest {
    fn example() -> Self {
        Self {
            phone: Text("79001234567".to_string()),
        }
    }
}

/// The code to type into the phone.
#[derive(Object)]
#[oai(example)]
pub struct PairCodeResponse {
    /// Eight characters, shown as `ABCD-EFGH`; valid about three minutes.
    pub code: String,
}

impl Example for PairCodeResponse {
    fn example() -> Self {
        Self {
            code: "ABCD-EFGH".into(),
        }
    }
}

impl From<PairCodeError> for ApiError {
    fn from(e: PairCodeError) -> Self {
        match e {
            PairCodeError::NotRunning => {
                ApiError::conflict("The instance is not waiting to be paired; reconnect it first")
            }
            PairCodeError::AlreadyPaired => {
                ApiError::conflict("The instance is already paired; log it out first")
            }
            PairCodeError::Engine(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no pairing code");
                ApiError::bad_gateway("WhatsApp gave no pairing code; try again in a moment")
            }
        }
    }
}

/// The phone number's digits, or a 400.
fn phone_digits(raw: &str) -> ApiResult<String> {
    let jid = Jid::parse_recipient(raw.trim()).map_err(|e| ApiError::bad_request(e.0))?;
    if !jid.as_str().ends_with("@s.whatsapp.net") {
        return Err(ApiError::bad_request(
            "phone must be a phone number (7-15 digits)",
        ));
    }
    if jid.user().starts_with('0') {
        return Err(ApiError::bad_request(
            "phone must be in international form (country code first, no leading 0)",
        ));
    }
    Ok(jid.user().to_string())
}

/// Pairing by phone number.
pub struct PairingApi;

#[OpenApi(tag = "Tag::Instances")]
impl PairingApi {
    /// Pair the instance by phone number instead of QR: answers the code to
    /// type into the phone (WhatsApp > Linked devices > Link a device >
    /// Link with phone number instead). The instance must be waiting to be
    /// paired (status `qr`); the QR code keeps working meanwhile. The code
    /// and each replacement WhatsApp asks for are also `pair_code_received`
    /// events (and webhooks); a new request replaces the previous code.
    #[oai(path = "/api/instances/:instanceId/pair-code", method = "post")]
    async fn pair_code(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<PairCodeRequest>,
    ) -> ApiResult<Json<PairCodeResponse>> {
        let phone = phone_digits(&body.phone)?;
        let code = state.sessions.pair_with_code(owned.id(), &phone).await?;
        Ok(Json(PairCodeResponse { code }))
    }
}
