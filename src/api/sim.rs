//! `/api/sim/…`: control of the simulated WhatsApp network. Present in the
//! spec always; answers 404 unless the gateway runs with `WA_ENGINE=sim`.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::api::AppState;
use crate::error::{ApiError, ApiResult};
use crate::whatsapp::Jid;
use crate::whatsapp::sim::{SimEngine, SimError};

use super::security::{Tag, owned_instance};
use super::types::Text;

/// A scan of the instance's QR code.
#[derive(Object, Default)]
pub struct ScanRequest {
    /// The phone that scans (default: a number derived from the instance id).
    pub phone: Option<String>,
}

/// The paired phone.
#[derive(Object)]
pub struct ScanResponse {
    pub success: bool,
    pub phone: String,
}

/// A message to the instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InboundRequest {
    /// Sender phone number or JID.
    pub from: Text,
    pub body: Text,
    pub push_name: Option<Text>,
}

/// The id of the injected message.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InboundResponse {
    pub success: bool,
    pub message_id: String,
}

/// The phone types the instance's pairing code.
#[derive(Object)]
pub struct EnterCodeRequest {
    /// The code as shown (`ABCD-EFGH`; case and dash do not matter).
    pub code: Text,
}

/// `{ "success": true }`.
#[derive(Object)]
pub struct SimOk {
    pub success: bool,
}

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Io(e) => ApiError::internal(e),
            SimError::WrongCode(_) => ApiError::bad_request(e.to_string()),
            other => ApiError::conflict(other.to_string()),
        }
    }
}

fn sim(state: &AppState) -> ApiResult<&SimEngine> {
    state
        .sim
        .as_ref()
        .ok_or_else(|| ApiError::not_found("The sim engine is not enabled (WA_ENGINE=sim)"))
}

/// Sim control endpoints.
pub struct SimApi;

#[OpenApi(tag = "Tag::Sim")]
impl SimApi {
    /// Pair the instance as if a phone scanned its QR code. The body is
    /// optional: `{ "phone": "79001234567" }` (JSON); without it a number
    /// derived from the instance id pairs.
    #[oai(path = "/api/sim/instances/:instanceId/scan", method = "post")]
    async fn scan(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Vec<u8>,
    ) -> ApiResult<Json<ScanResponse>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let request: ScanRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ScanRequest::default()
        } else {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
            match value.get("phone") {
                None | Some(serde_json::Value::Null) => ScanRequest::default(),
                Some(serde_json::Value::String(p)) => ScanRequest {
                    phone: Some(p.clone()),
                },
                Some(_) => return Err(ApiError::bad_request("phone must be a string")),
            }
        };
        let phone = match request.phone {
            Some(p) => {
                let jid = Jid::parse_recipient(&p).map_err(|e| ApiError::bad_request(e.0))?;
                if jid.is_group() {
                    return Err(ApiError::bad_request("phone must be a phone number"));
                }
                Some(jid.user().to_string())
            }
            None => None,
        };
        let phone = sim.scan(id, phone.as_deref())?;
        Ok(Json(ScanResponse {
            success: true,
            phone,
        }))
    }

    /// The "phone" types the pairing code the instance shows (after `POST
    /// /api/instances/{instanceId}/pair-code`): the instance pairs with the
    /// number the code was asked for. 400 for a wrong code, 409 when no code
    /// is waiting.
    #[oai(path = "/api/sim/instances/:instanceId/enter-code", method = "post")]
    async fn enter_code(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<EnterCodeRequest>,
    ) -> ApiResult<Json<ScanResponse>> {
        let phone = sim(&state)?.enter_code(owned.id().as_str(), &body.code)?;
        Ok(Json(ScanResponse {
            success: true,
            phone,
        }))
    }

    /// Make the instance receive a message.
    #[oai(path = "/api/sim/instances/:instanceId/inbound", method = "post")]
    async fn inbound(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        body: Json<InboundRequest>,
    ) -> ApiResult<Json<InboundResponse>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        let from = Jid::parse_recipient(&body.from).map_err(|e| ApiError::bad_request(e.0))?;
        if body.body.is_empty() {
            return Err(ApiError::bad_request("body must not be empty"));
        }
        let message_id = sim.inbound(
            id,
            &from,
            &body.body,
            body.push_name.clone().map(String::from),
        )?;
        Ok(Json(InboundResponse {
            success: true,
            message_id,
        }))
    }

    /// Drop the instance's connection as a network failure would (it reconnects with backoff).
    #[oai(path = "/api/sim/instances/:instanceId/drop", method = "post")]
    async fn drop_connection(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
    ) -> ApiResult<Json<SimOk>> {
        let (sim, id) = (sim(&state)?, owned.id().as_str());
        sim.drop_connection(id)?;
        Ok(Json(SimOk { success: true }))
    }
}
