//! The OpenAPI document as the gateway serves it: poem-openapi's output,
//! with what the generator cannot say added.
//!
//! poem-openapi reads an explicit `null` in a JSON request body as "absent"
//! for every optional field (an `Option`, a `MaybeUndefined`, a field with a
//! default), and several fields document `null` as "clear it". The generated
//! document never says so, which makes a client's `null` look like invalid
//! input that the gateway wrongly accepts. [`document`] marks each optional
//! property of every schema a JSON request body reaches as `nullable`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// The served document, from poem-openapi's `generated` JSON.
pub fn document(generated: &str) -> String {
    let Ok(mut spec) = serde_json::from_str::<Value>(generated) else {
        return generated.to_owned();
    };
    mark_nullable(&mut spec);
    let mut out = pretty_in_document_order(spec).unwrap_or_else(|| generated.to_owned());
    out.push('\n');
    out
}

/// The top-level sections in the order a reader expects (serde_json's map
/// sorts its keys, which would put `components` first); inner keys sorted.
fn pretty_in_document_order(spec: Value) -> Option<String> {
    const ORDER: [&str; 6] = ["openapi", "info", "servers", "tags", "paths", "components"];
    let Value::Object(mut sections) = spec else {
        return None;
    };
    let mut ordered: Vec<(String, Value)> = ORDER
        .iter()
        .filter_map(|k| sections.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    ordered.extend(sections);
    let mut out = String::from("{");
    for (n, (key, value)) in ordered.iter().enumerate() {
        let body = serde_json::to_string_pretty(value)
            .ok()?
            .replace('\n', "\n  ");
        let sep = if n == 0 { "" } else { "," };
        out.push_str(&format!("{sep}\n  {}: {body}", Value::String(key.clone())));
    }
    out.push_str("\n}");
    Some(out)
}

/// Marks the optional properties of every schema a JSON request body reaches.
fn mark_nullable(spec: &mut Value) {
    let mut names = BTreeSet::new();
    let mut pending: Vec<Value> = request_body_schemas(spec);
    while let Some(schema) = pending.pop() {
        if let Some(name) = schema_ref(&schema) {
            if names.insert(name.to_owned())
                && let Some(target) = spec["components"]["schemas"].get(name)
            {
                pending.push(target.clone());
            }
            continue;
        }
        pending.extend(nested_schemas(&schema).cloned());
    }
    let Some(schemas) = spec["components"]["schemas"].as_object_mut() else {
        return;
    };
    for name in &names {
        if let Some(schema) = schemas.get_mut(name) {
            mark_optional_properties(schema);
        }
    }
}

/// The schemas of every `application/json` request body.
fn request_body_schemas(spec: &Value) -> Vec<Value> {
    let mut found = Vec::new();
    for ops in spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media_type, body) in content {
                    if media_type.starts_with("application/json") {
                        found.push(body["schema"].clone());
                    }
                }
            }
        }
    }
    found
}

/// The component a `{"$ref": "#/components/schemas/X"}` names.
fn schema_ref(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

/// The schemas directly inside `schema` (properties, items, compositions).
fn nested_schemas(schema: &Value) -> impl Iterator<Item = &Value> {
    let properties = schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values());
    let composed = ["allOf", "anyOf", "oneOf"]
        .into_iter()
        .filter_map(|k| schema[k].as_array())
        .flatten();
    let single = ["items", "additionalProperties"]
        .into_iter()
        .map(|k| &schema[k])
        .filter(|s| s.is_object());
    properties.chain(composed).chain(single)
}

/// Adds `nullable` to each property `schema` does not require. A bare
/// `$ref` takes no siblings in OpenAPI 3.0, so it is wrapped in an `allOf`.
fn mark_optional_properties(schema: &mut Value) {
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let Some(properties) = schema["properties"].as_object_mut() else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        if required.contains(name) || !property.is_object() {
            continue;
        }
        if property.get("$ref").is_some() {
            *property = json!({ "allOf": [property.take()] });
        }
        property["nullable"] = Value::Bool(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({
            "paths": {
                "/a": {"post": {"requestBody": {"content": {"application/json; charset=utf-8":
                    {"schema": {"$ref": "#/components/schemas/Create"}}}}}},
                "/b": {"get": {"responses": {"200": {"content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/View"}}}}}}},
                "/c": {"post": {"requestBody": {"content": {"multipart/form-data":
                    {"schema": {"$ref": "#/components/schemas/Upload"}}}}}}
            },
            "components": {"schemas": {
                "Create": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "note": {"type": "string"},
                    "settings": {"$ref": "#/components/schemas/Settings"},
                    "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}
                }},
                "Settings": {"type": "object", "properties": {"on": {"type": "boolean"}}},
                "Tag": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "string"}, "label": {"type": "string"}
                }},
                "View": {"type": "object", "properties": {"note": {"type": "string"}}},
                "Upload": {"type": "object", "properties": {"caption": {"type": "string"}}}
            }}
        })
    }

    #[test]
    fn optional_properties_of_json_request_bodies_are_nullable() {
        let mut spec = spec();
        mark_nullable(&mut spec);
        let schemas = &spec["components"]["schemas"];
        assert_eq!(schemas["Create"]["properties"]["note"]["nullable"], true);
        assert_eq!(schemas["Create"]["properties"]["tags"]["nullable"], true);
        assert_eq!(
            schemas["Create"]["properties"]["settings"],
            json!({"allOf": [{"$ref": "#/components/schemas/Settings"}], "nullable": true}),
            "a $ref takes no siblings, so it is wrapped"
        );
        assert_eq!(schemas["Settings"]["properties"]["on"]["nullable"], true);
        assert_eq!(schemas["Tag"]["properties"]["label"]["nullable"], true);
    }

    #[test]
    fn required_response_and_form_fields_are_left_alone() {
        let mut spec = spec();
        mark_nullable(&mut spec);
        let schemas = &spec["components"]["schemas"];
        assert_eq!(
            schemas["Create"]["properties"]["name"].get("nullable"),
            None
        );
        assert_eq!(schemas["Tag"]["properties"]["id"].get("nullable"), None);
        assert_eq!(schemas["View"]["properties"]["note"].get("nullable"), None);
        assert_eq!(
            schemas["Upload"]["properties"]["caption"].get("nullable"),
            None
        );
    }

    #[test]
    fn the_sections_keep_their_order_and_the_document_stays_json() {
        let out = document(&spec().to_string());
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["paths"]["/a"]["post"], spec()["paths"]["/a"]["post"]);
        assert!(out.find("\"paths\"").unwrap() < out.find("\"components\"").unwrap());
    }

    #[test]
    fn a_document_that_is_not_json_is_served_as_it_came() {
        assert_eq!(document("not json"), "not json");
    }
}
