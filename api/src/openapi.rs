//! `GET /openapi.json`: generated from the same endpoint table the router is built
//! from, and from the wire types' `ToSchema` derives, so it cannot drift.

use std::collections::BTreeMap;

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{ComponentsBuilder, OneOfBuilder, Schema};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder,
    Tag,
};

use crate::endpoint::{schema_of, Endpoint, TypeSchema, Verb};
use crate::reply::{http_status, Envelope, FailedReply};
use crate::switch::*;
use crate::{Failure, Reason, Switch};

/// Path of the document.
pub const OPENAPI_PATH: &str = "/openapi.json";

const DESCRIPTION: &str = "\
The lwork HTTP façade of the softswitch (see API.md).

* **Paths** are served exactly as listed and also with a trailing slash.
* **Parameters** come from the query string, a JSON body or a form-urlencoded body \
(merged; the body wins over the query string). Unknown fields, and `t` (a cache \
buster), are ignored. Numbers may be sent as strings and objects as their JSON text \
(what forms and query strings can carry). A missing or malformed field gives HTTP 400 \
`{\"status\":\"failed\",\"reason\":\"bad_request\",\"detail\":\"<field>: <what is wrong>\"}`.
* **Aliases**: `uuid`/`user_id`, `phone`/`callee_phone`, `device_id`/`dev_id`; both \
names are listed in the schemas, either may be sent.
* **data_enc envelope**: any request may be sent as `{\"data_enc\": X}` (body, form or \
query), X = 7 arbitrary characters + base64(plain JSON parameters). Its reply is then \
`{\"data_enc\": Y}`, Y = base64(plain JSON reply) with 2 arbitrary characters inserted \
after the 3rd character. An X that does not decode gives HTTP 400 \
`{\"status\":\"failed\",\"reason\":\"bad_data_enc\"}` (never enveloped). This is \
obfuscation, not security.
* **Replies**: success is `{\"status\":\"ok\", ...}` with HTTP 200. Business failures \
are `{\"status\":\"failed\",\"reason\":...}` with HTTP 200; malformed requests 400, a bad \
login token 401, a body over the size limit 413, rate limiting 429, server faults 500, \
overload 503, a request over the time limit 504 (all with the same JSON shape).
* **Login token**: login returns `token`, bound to account and device. Any request may \
send it as `token` or as `Authorization: Bearer <token>`.
* **Request ids**: `x-request-id` is echoed, or generated when absent, on every reply.
* **Times** in replies (`YYYY-M-D HH:MM:SS`) are UTC unless the server is configured \
with another offset.";

/// Only for listing the endpoints without a real switch; can never be constructed.
#[derive(Clone, Copy)]
enum Never {}

impl Switch for Never {
    async fn auth_code(&self, _: AuthCodeReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn register(&self, _: RegisterReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn forget_pwd(&self, _: ForgetPwdReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn modify_pwd(&self, _: ModifyPwdReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn add_info(&self, _: AddInfoReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn login(&self, _: LoginReq) -> Result<LoginOk, Failure> {
        match *self {}
    }
    async fn logout(&self, _: LogoutReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn query_status(&self, _: QueryStatusReq) -> Result<Vec<UserState>, Failure> {
        match *self {}
    }
    async fn start_call(&self, _: StartCallReq) -> Result<CallStarted, Failure> {
        match *self {}
    }
    async fn stop_call(&self, _: SessionReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn call_status(&self, _: SessionReq) -> Result<CallStatus, Failure> {
        match *self {}
    }
    async fn dtmf(&self, _: DtmfReq) -> Result<(), Failure> {
        match *self {}
    }
    async fn call_history(&self, _: HistoryReq) -> Result<Vec<HistoryGroup>, Failure> {
        match *self {}
    }
}

/// The OpenAPI description of every endpoint of this crate.
pub fn openapi() -> OpenApi {
    document(&crate::endpoints::<Never>())
}

/// Failures any endpoint may answer with, besides its own business reasons.
const COMMON_REASONS: &[Reason] = &[
    Reason::BadRequest,
    Reason::BadDataEnc,
    Reason::BadToken,
    Reason::MethodNotAllowed,
    Reason::TooLarge,
    Reason::Internal,
    Reason::Unavailable,
    Reason::Timeout,
];

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn one_of(items: impl IntoIterator<Item = RefOr<Schema>>) -> RefOr<Schema> {
    let mut b = OneOfBuilder::new();
    for item in items {
        b = b.item(item);
    }
    RefOr::T(Schema::OneOf(b.build()))
}

fn reason_list(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request's fields as query parameters (what web pages send on GET and DELETE).
fn query_parameters(request: &TypeSchema) -> Vec<utoipa::openapi::path::Parameter> {
    let RefOr::T(Schema::Object(object)) = &request.schema else {
        return Vec::new();
    };
    object
        .properties
        .iter()
        .map(|(name, schema)| {
            let required = if object.required.iter().any(|r| r == name) {
                Required::True
            } else {
                Required::False
            };
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(required)
                .schema(Some(schema.clone()))
                .build()
        })
        .collect()
}

fn request_body(
    request_ref: &RefOr<Schema>,
    envelope_ref: &RefOr<Schema>,
    required: bool,
) -> RequestBody {
    let schema = one_of([request_ref.clone(), envelope_ref.clone()]);
    RequestBodyBuilder::new()
        .description(Some(
            "The parameters as JSON or as a form, plain or in the data_enc envelope.",
        ))
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema.clone())).build(),
        )
        .content(
            "application/x-www-form-urlencoded",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

pub(crate) fn document<S>(endpoints: &[Endpoint<S>]) -> OpenApi {
    let mut schemas: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    let mut register = |t: TypeSchema| -> (RefOr<Schema>, TypeSchema) {
        for (name, schema) in &t.deps {
            schemas.insert(name.clone(), schema.clone());
        }
        schemas.insert(t.name.clone(), t.schema.clone());
        (reference(&t.name), t)
    };
    let (failed_ref, _) = register(schema_of::<FailedReply>());
    let (envelope_ref, _) = register(schema_of::<Envelope>());

    let mut paths = Paths::new();
    let mut tags: Vec<&'static str> = Vec::new();
    for ep in endpoints {
        let doc = &ep.doc;
        if !tags.contains(&doc.tag) {
            tags.push(doc.tag);
        }
        let (request_ref, request) = register((doc.request)());
        let (reply_ref, _) = register((doc.reply)());

        // Group every reason this endpoint can give by the HTTP status it is sent with.
        let mut by_status: BTreeMap<u16, Vec<Reason>> = BTreeMap::new();
        for r in doc.reasons.iter().chain(COMMON_REASONS) {
            let list = by_status.entry(http_status(*r).as_u16()).or_default();
            if !list.contains(r) {
                list.push(*r);
            }
        }
        let business = by_status.remove(&200).unwrap_or_default();
        let mut ok_description = String::from("Success");
        if !business.is_empty() {
            ok_description.push_str(", or a business failure: ");
            ok_description.push_str(&reason_list(&business));
        }
        ok_description.push_str(". An Envelope when the request came in one.");

        let mut op = OperationBuilder::new()
            .operation_id(Some(doc.operation_id))
            .tag(doc.tag)
            .summary(Some(doc.summary))
            .response(
                "200",
                ResponseBuilder::new().description(ok_description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(one_of([
                            reply_ref,
                            failed_ref.clone(),
                            envelope_ref.clone(),
                        ])))
                        .build(),
                ),
            );
        if !doc.description.is_empty() {
            op = op.description(Some(doc.description));
        }
        for (status, reasons) in by_status {
            op = op.response(
                status.to_string(),
                ResponseBuilder::new()
                    .description(format!("Failed: {}", reason_list(&reasons)))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(failed_ref.clone()))
                            .build(),
                    ),
            );
        }
        let method = match ep.verb {
            Verb::Get => {
                op = op.parameters(Some(query_parameters(&request)));
                HttpMethod::Get
            }
            Verb::Delete => {
                op = op
                    .parameters(Some(query_parameters(&request)))
                    .request_body(Some(request_body(&request_ref, &envelope_ref, false)));
                HttpMethod::Delete
            }
            Verb::Post => {
                op = op.request_body(Some(request_body(&request_ref, &envelope_ref, true)));
                HttpMethod::Post
            }
        };
        paths.add_path_operation(ep.path, vec![method], op.build());
    }

    paths.add_path_operation(
        OPENAPI_PATH,
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .operation_id(Some("openapi"))
            .tag("meta")
            .summary(Some("This document"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("OpenAPI document")
                    .content("application/json", ContentBuilder::new().build()),
            )
            .build(),
    );
    tags.push("meta");

    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("softswitch lwork API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new().schemas_from_iter(schemas).build(),
        ))
        .tags(Some(tags.into_iter().map(Tag::new)))
        .build()
}
