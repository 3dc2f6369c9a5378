//! The OpenAPI document of the admin API: the routes are written down in `openapi.json`; the
//! feature list and each feature's `config` schema come from the fault registry, so the document,
//! `GET /features`, the console and the REST API's validation can never disagree.

use serde_json::{Value, json};

use crate::chaos::FAULTS;

const ROUTES_DOCUMENT: &str = include_str!("openapi.json");

/// The whole document, as `GET /openapi.json` serves it.
pub fn document() -> Value {
    let mut document: Value = serde_json::from_str(ROUTES_DOCUMENT).expect("openapi.json is valid JSON");
    let names: Vec<&str> = FAULTS.iter().map(|spec| spec.name).collect();
    let operations = document["paths"].as_object_mut().into_iter().flat_map(|paths| paths.values_mut());
    for operation in operations.flat_map(|operations| operations.as_object_mut()).flat_map(|o| o.values_mut())
    {
        // `get_mut`, not indexing: indexing a missing key would insert `"parameters": null`.
        let parameters = operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten();
        for parameter in parameters.filter(|parameter| parameter["name"] == "feature") {
            parameter["schema"]["enum"] = json!(names);
        }
    }
    let configs: Vec<Value> = FAULTS
        .iter()
        .map(|spec| {
            let mut schema = spec.config_schema();
            schema["description"] = json!(format!("{}: {}", spec.name, spec.summary));
            schema
        })
        .collect();
    document["components"]["schemas"]["RuleBody"]["properties"]["config"] = json!({
        "description": "The shared fields (schedule, rate, brokers, topics) and the feature's own; see GET /features.",
        "anyOf": configs,
    });
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_is_in_the_document() {
        let document = document();
        let post = &document["paths"]["/tenant/{tenant}/user/{user}/feature/{feature}"]["post"];
        let feature = post["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "feature").unwrap();
        assert_eq!(feature["schema"]["enum"].as_array().unwrap().len(), FAULTS.len());
        let configs = document["components"]["schemas"]["RuleBody"]["properties"]["config"]["anyOf"]
            .as_array()
            .unwrap();
        assert_eq!(configs.len(), FAULTS.len());
        let invalid_schema = configs
            .iter()
            .find(|c| c["description"].as_str().unwrap().starts_with("invalid-schema"))
            .unwrap();
        assert_eq!(invalid_schema["required"], json!(["fakeSchemaId"]));
        assert!(invalid_schema["properties"]["topics"].is_object(), "shared fields are in every config");
        for (path, operations) in document["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let parameters = operation.get("parameters");
                assert!(parameters.is_none_or(Value::is_array), "{method} {path}: parameters must be a list");
            }
        }
    }
}
