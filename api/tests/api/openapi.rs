//! /openapi.json describes every endpoint, generated from the same table as the router.

use serde_json::Value;

use crate::mock::*;

#[tokio::test]
async fn openapi_lists_every_route() {
    let (app, _) = app();
    let r = send(&app, "GET", "/openapi.json", None, Vec::new()).await;
    assert_eq!(r.status, 200);
    let doc = r.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for case in cases() {
        let op = &paths[case.path][case.method.to_lowercase()];
        assert!(op.is_object(), "{} {} missing", case.method, case.path);
        assert!(op["responses"]["200"].is_object());
        assert!(op["responses"]["400"].is_object());
        // Every declared parameter of a GET is a known field of the request.
        if case.method == "GET" {
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"session_id"), "{names:?}");
        } else {
            assert!(op["requestBody"]["content"]["application/json"].is_object());
            assert!(op["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
        }
    }
    // Nothing documented that is not served, apart from the document itself.
    let served: usize = cases()
        .iter()
        .map(|c| c.path)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(paths.len(), served + 1);
    assert!(paths["/openapi.json"]["get"].is_object());

    // Part 2, named explicitly (not only through the case table).
    for (method, path) in [
        ("post", PUSH),
        ("post", BAIDU),
        ("post", P2P_RINGING),
        ("post", P2P_ANSWER),
        ("post", IP2P_ANSWER),
        ("post", P2P_REJECT),
        ("post", P2P_POLL),
        ("post", CALLBACK),
        ("delete", CALLBACK),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }
    let ok = paths[P2P_ANSWER]["post"]["responses"]["200"]["description"]
        .as_str()
        .unwrap();
    assert!(
        ok.contains("already_call_real_phone") && ok.contains("session_not_exist"),
        "{ok}"
    );
    let ok = paths[PUSH]["post"]["responses"]["200"]["description"]
        .as_str()
        .unwrap();
    assert!(ok.contains("unlogined"), "{ok}");

    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "PushPollWire",
        "PushPollReply",
        "PushEvent",
        "PushRegisterWire",
        "OpdataWire",
        "P2pAnswerWire",
        "Ip2pAnswerWire",
        "P2pRejectWire",
        "P2pPollReply",
        "CallbackWire",
        "CallbackReply",
        "CallbackStopWire",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    let states: Vec<&str> = schemas["PeerStatusWire"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for s in [
        "idle",
        "p2p_hookoff",
        "release",
        "a_ringing",
        "a_answered",
        "b_ringing",
        "bridged",
    ] {
        assert!(states.contains(&s), "{s} in {states:?}");
    }
    assert!(schemas["OpdataWire"]["properties"]["opdata"]["oneOf"].is_array());
    for name in [
        "FailedReply",
        "Envelope",
        "StatsWire",
        "HistoryReply",
        "StartRelayReply",
        "StartSdpWire",
        "StartEndpointWire",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    let reasons: Vec<&str> = schemas["Reason"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for r in api::Reason::ALL {
        assert!(reasons.contains(&r.as_str()), "{r}");
    }
    // Wire names are exact.
    assert!(schemas["StatsWire"]["properties"]["avgIJ"].is_object());
    assert!(schemas["WebStatusReply"]["properties"]["state"].is_object());
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("data_enc"));
    // All $refs resolve.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}

#[tokio::test]
async fn served_document_is_the_generated_one() {
    let (app, _) = app();
    let r = send(&app, "GET", "/openapi.json/", None, Vec::new()).await;
    assert_eq!(r.status, 200);
    let generated: Value = serde_json::from_str(&api::openapi().to_json().unwrap()).unwrap();
    assert_eq!(r.body, generated);
}

#[tokio::test]
async fn extra_paths_are_merged_in() {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, Paths};
    let mut paths = Paths::new();
    paths.add_path_operation(
        "/healthz",
        vec![HttpMethod::Get],
        OperationBuilder::new().build(),
    );
    let mut cfg = api::ApiConfig::default();
    cfg.openapi_extra = Some(utoipa::openapi::OpenApiBuilder::new().paths(paths).build());
    let (app, _) = app_with(cfg);
    let doc = send(&app, "GET", "/openapi.json", None, Vec::new())
        .await
        .body;
    assert!(doc["paths"]["/healthz"]["get"].is_object());
    assert!(doc["paths"]["/lwork/mobile/login"]["post"].is_object());
}
