//! Every host's plan, asked at once: what applying its declared file
//! would change there, computed by hostd with the code of the apply.

use hostd_api::{API_PREFIX, ConfigPlan, ConfigText};
use hyper::Method;
use hyper::body::Bytes;
use serde::Serialize;

use super::{Declared, HostConfigError, PlanSettings};
use crate::config::HostTarget;
use crate::fleet;
use crate::transport::{Transport, TransportError};

/// hostd's answer to a file that does not validate: the error names the
/// operator's file, the line and the key.
const UNPROCESSABLE: u16 = 422;

/// One host's plan; `diff --json` prints an array of these.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub address: String,
    /// The declared file, as hostctl.toml names it.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ConfigPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// hostd refused the file itself: it must be fixed, on every host.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

impl HostPlan {
    fn new(
        target: &HostTarget,
        file: &Declared,
        answer: Result<ConfigPlan, TransportError>,
    ) -> Self {
        let refused = matches!(
            &answer,
            Err(TransportError::Api { status, .. }) if *status == UNPROCESSABLE
        );
        let (plan, error) = fleet::split(answer);
        Self {
            host: target.name.clone(),
            address: target.destination.clone(),
            source: file.source.clone(),
            plan,
            error,
            refused,
        }
    }

    /// Applying would change something there.
    pub fn changes(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| !p.is_empty())
    }
}

/// The action of `diff`: each host's plan, in `hosts` order.
pub(super) async fn all(
    transport: &Transport,
    s: &PlanSettings,
) -> Result<Vec<HostPlan>, HostConfigError> {
    let path = format!("{API_PREFIX}/config/plan");
    let mut asks = Vec::with_capacity(s.files.len());
    for (target, file) in s.targets.hosts.iter().zip(&s.files) {
        let body = ConfigText {
            text: file.text.clone(),
            source: file.source.clone(),
        };
        let body = serde_json::to_vec(&body).map_err(HostConfigError::Request)?;
        asks.push((target, file, Bytes::from(body)));
    }
    Ok(fleet::parallel(asks, |(target, file, body)| {
        let answer = transport.call(target, Method::POST, &path, Some(body), s.timeout);
        async move { HostPlan::new(target, file, answer.await) }
    })
    .await)
}

/// What the plans say as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every host runs its declared file.
    Same,
    /// These hosts would change.
    Differs(Vec<String>),
}

/// A host that refused the file or gave no plan is no "differs": nothing
/// can be said of it, and nothing may be applied anywhere.
pub(super) fn verdict(plans: &[HostPlan]) -> Result<Verdict, HostConfigError> {
    let hosts = |pick: fn(&HostPlan) -> bool| -> Vec<String> {
        plans
            .iter()
            .filter(|p| pick(p))
            .map(|p| p.host.clone())
            .collect()
    };
    let refused = hosts(|p| p.refused);
    if !refused.is_empty() {
        return Err(HostConfigError::Refused { hosts: refused });
    }
    let unanswered = hosts(|p| p.plan.is_none());
    if !unanswered.is_empty() {
        return Err(HostConfigError::NoPlan { hosts: unanswered });
    }
    let changing = hosts(HostPlan::changes);
    Ok(if changing.is_empty() {
        Verdict::Same
    } else {
        Verdict::Differs(changing)
    })
}
