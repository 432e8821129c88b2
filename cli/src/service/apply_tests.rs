use hostd_api::ActiveState;

use super::tests::{host_status, result, scale};
use super::*;
use crate::exit::EXIT_USAGE;
use crate::fake_hosts::{FakeHosts, text, unit};

struct Fake(FakeHosts);

impl Fake {
    fn new(test: &str, answers: &[(&str, &str)]) -> Result<Self, Box<dyn std::error::Error>> {
        let status = serde_json::to_string(&host_status())?;
        Ok(Self(FakeHosts::new(test, answers, &status)?))
    }

    async fn run(&self, steps: Vec<Step>) -> (Result<(), ServiceError>, String) {
        let settings = ServiceSettings {
            targets: Targets {
                environment: "x".into(),
                hosts: self.0.hosts.clone(),
            },
            steps,
            json: false,
            timeout: Duration::from_secs(10),
        };
        let mut out = Vec::new();
        let result = run_with(&self.0.transport, &settings, &mut out).await;
        (result, text(&out))
    }

    /// Requests other than the status, as `host METHOD PATH BODY`.
    fn changes(&self) -> Vec<String> {
        let mut all = self.0.requests();
        all.retain(|l| !l.contains("/v1/status"));
        all
    }
}

fn ok_answer(service: &str) -> Result<String, serde_json::Error> {
    let r = result(
        service,
        vec![unit(
            "redis",
            "redis-server.service",
            None,
            ActiveState::Active,
        )],
    );
    Ok(format!("200 OK|{}", serde_json::to_string(&r)?))
}

#[tokio::test]
async fn stops_at_the_first_failed_host_and_says_who_was_done()
-> Result<(), Box<dyn std::error::Error>> {
    let ok = ok_answer("redis")?;
    let failed = r#"500 Internal Server Error|{"error":"restart of redis-server.service failed:\nredis-server[12]: Fatal error, can't open config file"}"#;
    let fake = Fake::new("stop", &[("a", &ok), ("b", failed), ("c", &ok)])?;
    let (result, out) = fake
        .run(vec![Step::Action {
            service: "redis".into(),
            action: ServiceAction::Restart,
        }])
        .await;
    assert_eq!(
        fake.changes(),
        [
            "a POST /v1/services/redis/restart",
            "b POST /v1/services/redis/restart"
        ]
    );
    assert!(
        out.ends_with("x: restart redis failed on b; done on: a; not touched: c\n"),
        "{out}"
    );
    let err = result.err().ok_or("expected a failure")?;
    let chain = hostd_api::error_chain(&err);
    assert_eq!(
        chain,
        "restart redis failed on b (done on: a; not touched: c): b: hostd answered 500 to \
         /v1/services/redis/restart: restart of redis-server.service failed:\n\
         redis-server[12]: Fatal error, can't open config file"
    );
    assert_eq!(err.exit_code(), ExitCode::FAILURE);
    assert!(err.hint().unwrap_or_default().contains("--host b"));
    Ok(())
}

#[tokio::test]
async fn refusals_reach_the_operator_verbatim_and_exit_2() -> Result<(), Box<dyn std::error::Error>>
{
    for (answer, message) in [
        (
            r#"404 Not Found|{"error":"no service \"apii\"; known: api, postgresql, redis"}"#,
            "no service \"apii\"; known: api, postgresql, redis",
        ),
        (
            r#"422 Unprocessable Entity|{"error":"api runs 1 to 8 instances, not 0"}"#,
            "api runs 1 to 8 instances, not 0",
        ),
    ] {
        // The status passes the local check; hostd has the last word.
        let fake = Fake::new("refusal", &[("a", answer), ("b", "200 OK|{}")])?;
        let (result, _) = fake.run(vec![scale("api", 0)]).await;
        assert_eq!(
            fake.changes(),
            [r#"a PUT /v1/services/api/instances {"instances":0}"#]
        );
        let err = result.err().ok_or("expected a refusal")?;
        let chain = hostd_api::error_chain(&err);
        assert!(chain.ends_with(&format!(": {message}")), "{chain}");
        assert_eq!(err.exit_code(), ExitCode::from(EXIT_USAGE));
    }
    Ok(())
}

#[tokio::test]
async fn busy_host_exits_1_with_a_retry_hint() -> Result<(), Box<dyn std::error::Error>> {
    let fake = Fake::new(
        "busy",
        &[(
            "a",
            r#"409 Conflict|{"error":"scale api=3 is in progress"}"#,
        )],
    )?;
    let (result, _) = fake.run(vec![scale("api", 2)]).await;
    let err = result.err().ok_or("expected busy")?;
    assert_eq!(err.exit_code(), ExitCode::FAILURE);
    assert!(hostd_api::error_chain(&err).ends_with("scale api=3 is in progress"));
    assert!(err.hint().unwrap_or_default().contains("retry"));
    Ok(())
}

#[tokio::test]
async fn unknown_service_or_count_out_of_range_changes_nothing()
-> Result<(), Box<dyn std::error::Error>> {
    let ok = ok_answer("api")?;
    let fake = Fake::new("nothing", &[("a", &ok), ("b", &ok)])?;
    let (result, out) = fake.run(vec![scale("api", 2), scale("nosuch", 2)]).await;
    assert!(
        matches!(result, Err(ServiceError::UnknownService { .. })),
        "{result:?}"
    );
    let (result, _) = fake.run(vec![scale("api", 999)]).await;
    assert!(
        matches!(result, Err(ServiceError::OutOfRange { max: 8, .. })),
        "{result:?}"
    );
    assert!(fake.changes().is_empty(), "{:?}", fake.changes());
    assert!(out.is_empty(), "{out}");
    Ok(())
}

#[tokio::test]
async fn scales_several_services_host_by_host_over_one_connection()
-> Result<(), Box<dyn std::error::Error>> {
    let ok = ok_answer("api")?;
    let fake = Fake::new("several", &[("a", &ok), ("b", &ok)])?;
    let (result, out) = fake.run(vec![scale("api", 3), scale("redis", 1)]).await;
    // redis is no instanced service: refused before anything runs.
    assert!(
        matches!(result, Err(ServiceError::NotScalable { .. })),
        "{result:?}"
    );
    assert!(out.is_empty());
    let (result, out) = fake.run(vec![scale("api", 3)]).await;
    result?;
    assert_eq!(
        fake.changes(),
        [
            r#"a PUT /v1/services/api/instances {"instances":3}"#,
            r#"b PUT /v1/services/api/instances {"instances":3}"#
        ]
    );
    assert!(out.ends_with("x: scale api=3 done on 2 host(s)\n"), "{out}");
    Ok(())
}
