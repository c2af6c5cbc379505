//! Which representation a client asked for: the page of an endpoint or its JSON answer.

use axum::http::{HeaderMap, header};

/// Whether `text/html` ranks strictly above `application/json` in the `Accept` header. Each type
/// gets the weight of the most specific range that matches it (RFC 9110, section 12.5.1). A tie
/// goes to JSON, so that `*/*` (curl) and a missing header keep the API's answers.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let ranges: Vec<MediaRange> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(MediaRange::parse)
        .collect();
    weight(&ranges, "text", "html") > weight(&ranges, "application", "json")
}

struct MediaRange {
    mime: mime::Mime,
    quality: f32,
}

impl MediaRange {
    fn parse(text: &str) -> Option<MediaRange> {
        let mime: mime::Mime = text.trim().parse().ok()?;
        let quality = mime
            .get_param("q")
            .map_or(Some(1.0), |q| q.as_str().parse::<f32>().ok())?
            .clamp(0.0, 1.0);
        Some(MediaRange { mime, quality })
    }

    /// `type/subtype` beats `type/*`, which beats `*/*`; `None` when the range does not match.
    fn specificity(&self, type_: &str, subtype: &str) -> Option<u8> {
        let range_type = self.mime.type_().as_str();
        let range_subtype = self.mime.subtype().as_str();
        match (range_type, range_subtype) {
            ("*", "*") => Some(0),
            (t, "*") if t.eq_ignore_ascii_case(type_) => Some(1),
            (t, s) if t.eq_ignore_ascii_case(type_) && s.eq_ignore_ascii_case(subtype) => Some(2),
            _ => None,
        }
    }
}

fn weight(ranges: &[MediaRange], type_: &str, subtype: &str) -> f32 {
    ranges
        .iter()
        .filter_map(|range| Some((range.specificity(type_, subtype)?, range.quality)))
        .max_by_key(|(specificity, _)| *specificity)
        .map_or(0.0, |(_, quality)| quality)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn prefers_html_for(accept: Option<&'static str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        }
        prefers_html(&headers)
    }

    #[test]
    fn browsers_get_pages() {
        for accept in [
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "text/html",
            "TEXT/HTML",
            "text/*",
            "application/json;q=0.5, text/html",
            "*/*;q=0.1, text/html;q=0.2",
        ] {
            assert!(prefers_html_for(Some(accept)), "{accept}");
        }
    }

    #[test]
    fn api_clients_keep_json() {
        for accept in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/json, text/html"),
            Some("text/html;q=0.5, application/json"),
            Some("text/html;q=0"),
            Some("text/*;q=0.5, application/*"),
            Some("text/html;q=nonsense"),
            Some("garbage"),
        ] {
            assert!(!prefers_html_for(accept), "{accept:?}");
        }
    }
}
