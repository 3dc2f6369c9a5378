//! A chaos schedule: switch a kaos rule on at a set time of the run and off again later, through
//! kaos's REST API.

use std::time::Duration;

use serde_json::Value;

/// One scheduled fault: `AT:FOR:FEATURE:BODY`, seconds from the start of the run, how long it
/// stays on, the kaos feature, and the JSON body kaos's API takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosWindow {
    pub at: Duration,
    pub lasts: Duration,
    pub feature: String,
    pub body: Value,
}

impl ChaosWindow {
    pub fn parse(text: &str) -> Result<ChaosWindow, String> {
        let mut parts = text.splitn(4, ':');
        let mut field = |name: &str| parts.next().ok_or_else(|| format!("--chaos '{text}': missing {name}"));
        let seconds = |name: &str, value: &str| {
            value.parse::<f64>().ok().filter(|s| *s >= 0.0).map(Duration::from_secs_f64).ok_or_else(|| {
                format!("--chaos '{text}': {name} must be a number of seconds ≥ 0, got '{value}'")
            })
        };
        let at = seconds("AT", field("AT")?)?;
        let lasts = seconds("FOR", field("FOR")?)?;
        let feature = field("FEATURE")?.to_owned();
        let body: Value = serde_json::from_str(field("BODY")?)
            .map_err(|e| format!("--chaos '{text}': BODY is not JSON: {e}"))?;
        for key in ["apiKeys", "direction"] {
            if !body.get(key).is_some_and(Value::is_string) {
                return Err(format!("--chaos '{text}': BODY needs \"{key}\""));
            }
        }
        Ok(ChaosWindow { at, lasts, feature, body })
    }

    fn rule_path(&self, tenant: &str, user: &str) -> String {
        format!("/tenant/{tenant}/user/{user}/feature/{}", self.feature)
    }

    pub fn switch_on(&self, admin: &str, tenant: &str, user: &str) -> Result<(), String> {
        let (status, answer) = http(admin, "POST", &self.rule_path(tenant, user), &self.body.to_string())?;
        if status != 200 {
            return Err(format!("kaos refused the {} rule ({status}): {answer}", self.feature));
        }
        Ok(())
    }

    pub fn switch_off(&self, admin: &str, tenant: &str, user: &str) -> Result<(), String> {
        let path = format!(
            "{}/apiKeys/{}/direction/{}",
            self.rule_path(tenant, user),
            self.body["apiKeys"].as_str().unwrap_or_default(),
            self.body["direction"].as_str().unwrap_or_default()
        );
        let (status, answer) = http(admin, "DELETE", &path, "")?;
        if status != 200 {
            return Err(format!("kaos did not delete the {} rule ({status}): {answer}", self.feature));
        }
        Ok(())
    }
}

/// A minimal HTTP/1.0 request to kaos's admin API: (status, body), or what failed and where.
fn http(admin: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    kaos_testkit::http::request(admin, method, path, body)
        .map_err(|e| format!("{method} http://{admin}{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_json_bodies() {
        let window = ChaosWindow::parse(
            r#"10:5:broken-broker:{"config":{"errors":["A:B"]},"apiKeys":"PRODUCE","direction":"REQUEST"}"#,
        )
        .unwrap();
        assert_eq!((window.at, window.lasts), (Duration::from_secs(10), Duration::from_secs(5)));
        assert_eq!(window.feature, "broken-broker");
        assert_eq!(window.body["config"]["errors"][0], "A:B");
        assert!(ChaosWindow::parse("10:5:broken-broker").is_err());
        assert!(ChaosWindow::parse("x:5:slow-broker:{}").is_err());
        assert!(ChaosWindow::parse(r#"1:5:slow-broker:{"config":{}}"#).unwrap_err().contains("apiKeys"));
    }
}
