//! What the pages show, read from the OpenAPI document: the pages cannot drift from the API.

use serde_json::Value;

/// Every documented route, in the document's order.
pub struct Catalogue {
    pub title: String,
    pub version: String,
    pub description: Prose,
    pub endpoints: Vec<Endpoint>,
}

/// One path and what each of its methods does.
pub struct Endpoint {
    pub path: String,
    pub tag: String,
    pub tag_description: Prose,
    pub operations: Vec<Operation>,
    /// The operations an answer here links to as the next step (OpenAPI response `links`),
    /// whose forms the page shows after its own: setting up an authenticator, then
    /// confirming it with a code.
    pub linked: Vec<Linked>,
    /// An API endpoint, whose URL gives a browser its page.
    pub browsable: bool,
}

/// An operation of another path, shown on a page as its next step.
pub struct Linked {
    pub path: String,
    pub operation: Operation,
}

pub struct Operation {
    pub method: String,
    pub summary: String,
    pub description: Prose,
    /// Sent with the access token of a login.
    pub bearer: bool,
    /// The parameters in the path, such as `{id}`.
    pub path_fields: Vec<Field>,
    /// The request body's fields, when it has one.
    pub fields: Vec<Field>,
    /// A request body that works, as compact JSON.
    pub example: Option<String>,
}

/// A request body field, as a form input.
pub struct Field {
    pub name: String,
    pub label: String,
    pub input_type: &'static str,
    pub autocomplete: &'static str,
    pub hint: Option<String>,
    pub required: bool,
    /// Filled in from (and kept in) the tab's session storage.
    pub refresh_token: bool,
    /// A second factor of a login: shown once the service asks for one (`mfa_required`).
    pub second_factor: bool,
}

/// Paragraphs of text in which `backquoted` words are code.
#[derive(Default)]
pub struct Prose(pub Vec<Vec<Span>>);

pub struct Span {
    pub code: bool,
    pub text: String,
}

/// The one field the contract names for a refresh token.
const REFRESH_TOKEN_FIELD: &str = "refresh_token";

/// The fields a login sends only when the account has two-factor login on.
const SECOND_FACTOR_FIELDS: [&str; 2] = ["otp", "recovery_code"];

impl Catalogue {
    pub fn from_document(document: &Value) -> Catalogue {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let endpoints = document["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, item)| Endpoint::read(document, path, item))
            .collect();
        Catalogue {
            title: text("/info/title"),
            version: text("/info/version"),
            description: Prose::parse(&text("/info/description")),
            endpoints,
        }
    }

    /// The endpoint that `route` (a router path, with or without its trailing slash) serves, if
    /// it is an API endpoint.
    pub fn browsable(&self, route: &str) -> Option<&Endpoint> {
        let route = route.trim_end_matches('/');
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.browsable && endpoint.path.trim_end_matches('/') == route)
    }

    /// The contract's endpoints, in the order a newcomer calls them.
    pub fn api(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(|endpoint| endpoint.browsable && endpoint.tag != "documentation")
    }

    /// Everything else: the documentation and the operations endpoints.
    pub fn others(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(|endpoint| !endpoint.browsable || endpoint.tag == "documentation")
    }
}

impl Endpoint {
    fn read(document: &Value, path: &str, item: &Value) -> Endpoint {
        let operations: Vec<Operation> = ["get", "put", "post", "patch", "delete"]
            .into_iter()
            .filter_map(|method| Some(Operation::read(document, method, item.get(method)?)))
            .collect();
        let tag = item
            .as_object()
            .into_iter()
            .flat_map(|operations| operations.values())
            .find_map(|operation| operation.pointer("/tags/0")?.as_str())
            .unwrap_or_default()
            .to_owned();
        let tag_description = document["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|candidate| candidate["name"] == tag.as_str())
            .and_then(|candidate| candidate["description"].as_str())
            .map(Prose::parse)
            .unwrap_or_default();
        // The pages themselves (`/api/docs/`) answer HTML; every other endpoint gets a page.
        let is_page = item
            .as_object()
            .into_iter()
            .flatten()
            .any(|(_, operation)| {
                operation["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .any(|(status, response)| {
                        status.starts_with('2') && response.pointer("/content/text~1html").is_some()
                    })
            });
        let linked = item
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(_, operation)| linked_operation_ids(operation))
            .filter_map(|operation_id| Linked::find(document, operation_id))
            .collect();
        Endpoint {
            path: path.to_owned(),
            browsable: path.starts_with("/api/") && !is_page,
            tag,
            tag_description,
            operations,
            linked,
        }
    }

    /// `/api/me/password/` → `me/password`, for the navigation.
    pub fn name(&self) -> &str {
        let path = self.path.strip_prefix("/api/").unwrap_or(&self.path);
        path.trim_end_matches('/')
    }

    /// Something for a browser to visit: the endpoint's page, or a plain path that answers GET.
    pub fn linkable(&self) -> bool {
        self.browsable || (!self.path.contains('{') && self.methods().any(|method| method == "GET"))
    }

    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.operations
            .iter()
            .map(|operation| operation.method.as_str())
    }

    pub fn needs_bearer(&self) -> bool {
        self.operations.iter().any(|operation| operation.bearer)
    }

    /// What the endpoint is for: what each of its methods does.
    pub fn summary(&self) -> String {
        let summaries: Vec<&str> = self
            .operations
            .iter()
            .map(|operation| operation.summary.as_str())
            .collect();
        summaries.join(" · ")
    }
}

/// The operations the successful answers of `operation` link to.
fn linked_operation_ids(operation: &Value) -> impl Iterator<Item = &str> {
    operation["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(status, _)| status.starts_with('2'))
        .filter_map(|(_, response)| response["links"].as_object())
        .flatten()
        .filter_map(|(_, link)| link["operationId"].as_str())
}

impl Linked {
    /// The operation whose id is `operation_id`, with its path.
    fn find(document: &Value, operation_id: &str) -> Option<Linked> {
        document["paths"]
            .as_object()?
            .iter()
            .find_map(|(path, item)| {
                let (method, operation) = item
                    .as_object()?
                    .iter()
                    .find(|(_, operation)| operation["operationId"] == operation_id)?;
                Some(Linked {
                    path: path.to_owned(),
                    operation: Operation::read(document, method, operation),
                })
            })
    }
}

impl Operation {
    fn read(document: &Value, method: &str, operation: &Value) -> Operation {
        let body = operation
            .pointer("/requestBody/content/application~1json/schema")
            .map(|schema| resolve(document, schema));
        // For password managers: a password sent to create something (201), or named new, is a
        // new one.
        let creates = operation.pointer("/responses/201").is_some();
        let required: Vec<&str> = body
            .and_then(|schema| schema["required"].as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let fields = body
            .and_then(|schema| schema["properties"].as_object())
            .into_iter()
            .flatten()
            .map(|(name, property)| {
                Field::read(name, property, required.contains(&name.as_str()), creates)
            })
            .collect();
        let path_fields = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == "path")
            .filter_map(|parameter| {
                let name = parameter["name"].as_str()?;
                let mut property = parameter["schema"].clone();
                property["description"] = parameter["description"].clone();
                Some(Field::read(name, &property, true, false))
            })
            .collect();
        Operation {
            method: method.to_ascii_uppercase(),
            path_fields,
            summary: operation["summary"].as_str().unwrap_or_default().to_owned(),
            description: Prose::parse(operation["description"].as_str().unwrap_or_default()),
            bearer: operation["security"]
                .as_array()
                .is_some_and(|requirements| !requirements.is_empty()),
            fields,
            example: body
                .and_then(|schema| schema.get("example"))
                .map(Value::to_string),
        }
    }
}

impl Field {
    fn read(name: &str, property: &Value, required: bool, creates: bool) -> Field {
        let format = property["format"].as_str().unwrap_or_default();
        let (input_type, autocomplete) = match format {
            "email" => ("email", "username"),
            "password" if creates || name.starts_with("new_") => ("password", "new-password"),
            "password" => ("password", "current-password"),
            _ => ("text", "off"),
        };
        Field {
            name: name.to_owned(),
            label: label(name),
            input_type,
            autocomplete,
            hint: property["description"].as_str().map(str::to_owned),
            required,
            refresh_token: name == REFRESH_TOKEN_FIELD,
            second_factor: SECOND_FACTOR_FIELDS.contains(&name),
        }
    }
}

/// `refresh_token` → `Refresh token`; an abbreviation is spelled out.
fn label(name: &str) -> String {
    if name == "otp" {
        return "One-time code".to_owned();
    }
    let words = name.replace('_', " ");
    let mut characters = words.chars();
    characters
        .next()
        .map(|first| first.to_uppercase().chain(characters).collect())
        .unwrap_or_default()
}

/// The schema `schema` points to, when it is a `$ref` to a component.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    schema["$ref"]
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| document.pointer(pointer))
        .unwrap_or(schema)
}

impl Prose {
    fn parse(text: &str) -> Prose {
        let paragraphs = text
            .split("\n\n")
            .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|paragraph| !paragraph.is_empty())
            .map(|paragraph| {
                paragraph
                    .split('`')
                    .enumerate()
                    .filter(|(_, text)| !text.is_empty())
                    .map(|(index, text)| Span {
                        code: index % 2 == 1,
                        text: text.to_owned(),
                    })
                    .collect()
            })
            .collect();
        Prose(paragraphs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backquotes_mark_code_and_blank_lines_paragraphs() {
        let prose = Prose::parse("Send `refresh_token`\nhere.\n\nThen `/api/me/`.");
        let rendered: Vec<Vec<(bool, &str)>> = prose
            .0
            .iter()
            .map(|spans| spans.iter().map(|s| (s.code, s.text.as_str())).collect())
            .collect();
        assert_eq!(
            rendered,
            [
                vec![(false, "Send "), (true, "refresh_token"), (false, " here.")],
                vec![(false, "Then "), (true, "/api/me/"), (false, ".")],
            ]
        );
    }

    #[test]
    fn field_names_read_as_labels() {
        assert_eq!(label("refresh_token"), "Refresh token");
        assert_eq!(label("email"), "Email");
        assert_eq!(label("otp"), "One-time code");
    }
}
