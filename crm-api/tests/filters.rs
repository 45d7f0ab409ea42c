//! `GET /api/v1/analytics/overview` with repeated `filter=dimension:op:value` and
//! `compare=previous` over HTTP: the conformance fixture's figures, percent-encoded values,
//! typed errors for malformed, unknown and too many filters, and the export carrying them.

mod support;

use crm_store::conformance::filter_fixture;
use serde_json::Value;
use support::{code, start};

const T0: i64 = 1_700_000_000_000;

#[tokio::test]
async fn the_overview_is_narrowed_by_filters_and_compared_with_the_period_before() {
    let api = start().await;
    api.store.put_site(&crm_schemas::Site::new("filters", "Filters", 0)).await.unwrap();
    api.store.write(filter_fixture().into()).await.unwrap();
    let admin = api.login("admin").await;
    let window = format!("site_id=filters&from={}&to={}", T0 - 1_000, T0 + 86_400_000);
    let figures = |body: &Value| {
        let o = &body["data"]["overview"];
        (o["visitors"].as_u64().unwrap(), o["sessions"].as_u64().unwrap(), o["pageviews"].as_u64().unwrap())
    };
    let (status, body) = api.get(&format!("/api/v1/analytics/overview?{window}"), &admin).await;
    assert_eq!((status, figures(&body)), (200, (4, 4, 7)), "{body}");
    assert!(body["data"]["goals"].is_array(), "goals without filters");
    let (status, body) = api.get(&format!("/api/v1/analytics/overview?{window}&filter=country:is:DE"), &admin).await;
    assert_eq!((status, figures(&body)), (200, (2, 3, 4)), "{body}");
    assert_eq!(body["data"]["filters"][0]["dimension"], "country");
    assert!(body["data"]["goals"].is_null(), "goals are not narrowed by filters, so they are left out");
    // Two conditions; `*` and `/` percent-encoded as a browser sends them.
    let (_, body) = api.get(&format!("/api/v1/analytics/overview?{window}&filter=page%3Aglob%3A%2Fblog%2F*&filter=source:is:%28direct%29"), &admin).await;
    assert_eq!(figures(&body), (2, 2, 3), "{body}");

    let (status, body) = api.get(&format!("/api/v1/analytics/overview?site_id=filters&from={}&to={}&compare=previous", T0 + 86_400_000 - 1_000, T0 + 2 * 86_400_000), &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(figures(&body), (0, 0, 0), "nothing the day after");
    let previous = &body["data"]["previous"];
    assert_eq!((previous["overview"]["visitors"].as_u64(), previous["overview"]["pageviews"].as_u64()), (Some(4), Some(7)), "{body}");
    assert_eq!(previous["change"]["visitors"], -1.0);

    for (bad, why) in [
        ("filter=country", "no operator"),
        ("filter=city:is:Berlin", "unknown dimension"),
        ("filter=page:like:/x", "unknown operator"),
        ("filter=page:is:", "empty value"),
        ("filter=page:is:%00", "control character"),
        ("compare=next", "unknown comparison"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/analytics/overview?{window}&{bad}"), &admin).await;
        assert_eq!((status, code(&body)), (400, "invalid_parameter"), "{why}: {body}");
    }
    let many: String = (0..11).map(|i| format!("&filter=page:is:/{i}")).collect();
    let (status, body) = api.get(&format!("/api/v1/analytics/overview?{window}{many}"), &admin).await;
    assert_eq!((status, code(&body)), (400, "invalid_parameter"), "{body}");

    let (status, body) = api.get(&format!("/api/v1/analytics/timeseries?{window}&interval=hour&filter=page:glob:/blog/*"), &admin).await;
    assert_eq!(status, 200, "{body}");
    let points = body["data"]["points"].as_array().unwrap();
    let pageviews: u64 = points.iter().map(|p| p["pageviews"].as_u64().unwrap()).sum();
    assert_eq!(pageviews, 3, "the series of the filtered rows");
    assert_eq!(points[0]["goals"], serde_json::json!([]), "goals left out of a filtered series");
    // Live: the last five minutes, narrowed the same way.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let recent = |visitor: &str, path: &str| crm_store::conformance::sample_event("filters", visitor, now - 1_000, crm_schemas::EventBody::Pageview, path);
    api.store.write(crm_store::WriteBatch { events: vec![recent("live-1", "/pricing"), recent("live-2", "/blog/x")], ..Default::default() }.into()).await.unwrap();
    let (status, body) = api.get("/api/v1/analytics/live?site_id=filters&filter=page:prefix:/blog", &admin).await;
    assert_eq!((status, body["data"]["pageviews"].as_u64(), body["data"]["visitors"].as_u64()), (200, Some(1), Some(1)), "{body}");
    let (status, body) = api.get("/api/v1/analytics/live?site_id=filters&filter=page:is", &admin).await;
    assert_eq!((status, code(&body)), (400, "invalid_parameter"));
    let (status, body) = api.get(&format!("/api/v1/analytics/timeseries?{window}&filter=nope"), &admin).await;
    assert_eq!((status, code(&body)), (400, "invalid_parameter"));

    let csv = api
        .client
        .get(format!("{}/api/v1/analytics/export?report=overview&{window}&filter=country:is:US", api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    assert!(csv.contains("/blog/a") && !csv.contains("/pricing"), "the export is narrowed too: {csv}");
}
