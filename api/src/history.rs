//! Call history, grouped by (caller, callee), newest first, paged by id.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::endpoint::{schema_of, serve, AppState, Doc, Endpoint, Verb};
use crate::params::{de, either, non_empty};
use crate::reply::OkStatus;
use crate::switch::{HistoryCall, HistoryGroup, HistoryReq};
use crate::{Failure, Reason, Switch};

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

pub(crate) fn endpoints<S: Switch>() -> Vec<Endpoint<S>> {
    vec![Endpoint::new(
        Verb::Post,
        "/lwork/mobile/call_history",
        call_history::<S>,
        Doc {
            operation_id: "call_history",
            tag: "history",
            summary: "Call history",
            description: "Records grouped by (caller, callee), newest first. Page with \
                          `start_id` = the last `id` of the previous page (0 for the \
                          first) and `num` (1..=100, default 20). Times are \
                          `YYYY-M-D HH:MM:SS` in UTC unless the server is configured \
                          with another offset; \"\" when the call never reached that \
                          stage. `duration` in seconds.",
            request: schema_of::<HistoryWire>,
            reply: schema_of::<HistoryReply>,
            reasons: &[Reason::NoLogind],
        },
    )]
}

/// POST /lwork/mobile/call_history
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct HistoryWire {
    /// Required: this or its alias `user_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    uuid: Option<String>,
    /// Alias of `uuid`.
    #[serde(default, deserialize_with = "de::opt_string")]
    user_id: Option<String>,
    /// Last id of the previous page; 0 (default) for the first page.
    #[serde(default, deserialize_with = "de::opt_uint")]
    start_id: Option<u64>,
    /// Page size, 1..=100, default 20.
    #[serde(default, deserialize_with = "de::opt_uint")]
    num: Option<u32>,
    /// Alias: `device_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    dev_id: Option<String>,
    /// Alias of `dev_id`.
    #[serde(default, deserialize_with = "de::opt_string")]
    device_id: Option<String>,
    /// Login token (or `Authorization: Bearer`).
    #[serde(default, deserialize_with = "de::opt_string")]
    token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryCallWire {
    /// Call kind, e.g. `outbound`, `p2p`, `sip_call_in`, `callback`.
    #[serde(rename = "type")]
    kind: String,
    /// When the call was placed.
    calltime: String,
    /// When it started ringing; "" if it never did.
    ringtime: String,
    /// When it was answered; "" if it never was.
    starttime: String,
    /// Seconds talked.
    duration: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryGroupWire {
    id: u64,
    caller: String,
    callee: String,
    /// Number of calls in the group.
    times: u32,
    detail: Vec<HistoryCallWire>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryReply {
    status: OkStatus,
    history: Vec<HistoryGroupWire>,
}

impl TryFrom<HistoryWire> for HistoryReq {
    type Error = Failure;
    fn try_from(w: HistoryWire) -> Result<Self, Failure> {
        let num = w.num.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&num) {
            return Err(Failure::bad_request(
                "num",
                format!("must be 1..={MAX_PAGE}"),
            ));
        }
        Ok(HistoryReq {
            uuid: non_empty("uuid", either("uuid", "user_id", w.uuid, w.user_id)?)?,
            start_id: w.start_id.unwrap_or(0),
            num,
            dev_id: w.dev_id.or(w.device_id),
            token: w.token,
        })
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in small ranges by construction.
    (year, month as u32, day as u32)
}

/// `YYYY-M-D HH:MM:SS` (month and day without zero padding, as the seeds show) at
/// `utc_offset_secs` east of UTC. Times before 1970 are shown as the epoch.
pub(crate) fn format_time(t: SystemTime, utc_offset_secs: i32) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0);
    let local = secs.saturating_add(i64::from(utc_offset_secs));
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let sod = local.rem_euclid(86_400);
    format!(
        "{y}-{m}-{d} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn call_wire(c: HistoryCall, offset: i32) -> HistoryCallWire {
    let fmt = |t: Option<SystemTime>| t.map(|t| format_time(t, offset)).unwrap_or_default();
    HistoryCallWire {
        kind: c.kind,
        calltime: format_time(c.calltime, offset),
        ringtime: fmt(c.ringtime),
        starttime: fmt(c.starttime),
        duration: c.duration,
    }
}

fn group_wire(g: HistoryGroup, offset: i32) -> HistoryGroupWire {
    HistoryGroupWire {
        id: g.id,
        caller: g.caller,
        callee: g.callee,
        times: g.times,
        detail: g.detail.into_iter().map(|c| call_wire(c, offset)).collect(),
    }
}

async fn call_history<S: Switch>(State(st): State<AppState<S>>, req: Request) -> Response {
    let offset = st.cfg.history_utc_offset_secs;
    serve(&st, req, |w: HistoryWire| async {
        let groups = st.switch.call_history(w.try_into()?).await?;
        Ok(HistoryReply {
            status: OkStatus::Ok,
            history: groups.into_iter().map(|g| group_wire(g, offset)).collect(),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_like_the_seeds() {
        // 2015-05-22 16:28:49 UTC
        assert_eq!(format_time(at(1_432_312_129), 0), "2015-5-22 16:28:49");
        assert_eq!(format_time(at(0), 0), "1970-1-1 00:00:00");
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_secs(5), 0),
            "1970-1-1 00:00:00"
        );
        // leap day, and +08:00 crossing midnight
        assert_eq!(format_time(at(951_782_400), 0), "2000-2-29 00:00:00");
        assert_eq!(
            format_time(at(1_704_067_199), 8 * 3600),
            "2024-1-1 07:59:59"
        );
        assert_eq!(format_time(at(1_704_067_199), 0), "2023-12-31 23:59:59");
        assert_eq!(format_time(at(3600), -2 * 3600), "1969-12-31 23:00:00");
    }
}
