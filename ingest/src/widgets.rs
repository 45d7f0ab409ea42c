//! Serves the tracking script, the lead-forms embed, the chat widget and the demo page from the collector's origin, so the default
//! `data-api` (the script's own origin) points back at this collector. Websites get the
//! minified builds (`widgets/build.sh` → `widgets/dist/*.min.js`); the readable sources are
//! served too (`*.src.js`), for debugging.

use bytes::Bytes;
use crm_service::{error_response, text_response, Body};
use http::{header, HeaderValue, Response, StatusCode};

const TRACKING_MIN_JS: &str = include_str!("../../widgets/dist/tracking.min.js");
const TRACKING_SOURCE_JS: &str = include_str!("../../widgets/tracking.js");
const FORMS_MIN_JS: &str = include_str!("../../widgets/dist/forms-embed.min.js");
const FORMS_SOURCE_JS: &str = include_str!("../../widgets/forms-embed.js");
const CHAT_MIN_JS: &str = include_str!("../../widgets/dist/chat-widget.min.js");
const CHAT_SOURCE_JS: &str = include_str!("../../widgets/chat-widget.js");
const DEMO_HTML: &str = include_str!("../../widgets/demo.html");

pub fn serve(path: &str) -> Response<Body> {
    let (content_type, body, cache) = match path {
        "/widgets/tracking.js" | "/widgets/tracking.min.js" => ("application/javascript; charset=utf-8", TRACKING_MIN_JS, "public, max-age=300"),
        "/widgets/tracking.src.js" => ("application/javascript; charset=utf-8", TRACKING_SOURCE_JS, "public, max-age=300"),
        "/widgets/forms-embed.js" | "/widgets/forms-embed.min.js" => ("application/javascript; charset=utf-8", FORMS_MIN_JS, "public, max-age=300"),
        "/widgets/forms-embed.src.js" => ("application/javascript; charset=utf-8", FORMS_SOURCE_JS, "public, max-age=300"),
        "/widgets/chat-widget.js" | "/widgets/chat-widget.min.js" => ("application/javascript; charset=utf-8", CHAT_MIN_JS, "public, max-age=300"),
        "/widgets/chat-widget.src.js" => ("application/javascript; charset=utf-8", CHAT_SOURCE_JS, "public, max-age=300"),
        "/widgets/demo.html" => ("text/html; charset=utf-8", DEMO_HTML, "no-cache"),
        _ => return error_response(StatusCode::NOT_FOUND, "not_found", "no such widget file", None),
    };
    let mut response = text_response(StatusCode::OK, content_type, Bytes::from_static(body.as_bytes()));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}
