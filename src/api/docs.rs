//! `GET /docs`: the API reference page (CONTRACT.md §16), Swagger UI over `/openapi.json`.
//! Every file the page loads is embedded in the binary (the viewer from `vendor/swagger-ui`,
//! its version and licence there), and its Content-Security-Policy lets it reach no other
//! host.

use std::sync::LazyLock;

use actix_web::http::header::{self, EntityTag, HeaderValue, IfNoneMatch};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse};

use super::error::ApiError;

/// The page.
pub const PAGE_PATH: &str = "/docs";
/// The files it loads, by name (`ASSETS`); any other name is 404, as an unknown path.
pub const ASSET_PATH: &str = "/docs/{file}";

/// The vendored viewer's version (`vendor/swagger-ui/VENDORED.md`).
pub const SWAGGER_UI_VERSION: &str = "5.36.0";

/// Only this service, for everything the page loads or calls; no inline script or style
/// (the page has none). `data:` images are the icons inlined in Swagger UI's style sheet.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// A file the page is made of.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const PAGE: Asset = Asset {
    name: "",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("docs.html"),
};

/// What `docs.html` loads, relative to the page: `docs/<name>`.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../vendor/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        name: "swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../vendor/swagger-ui/swagger-ui.css"),
    },
    Asset {
        name: "favicon-32x32.png",
        content_type: "image/png",
        body: include_bytes!("../../vendor/swagger-ui/favicon-32x32.png"),
    },
    Asset {
        name: "docs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("docs.js"),
    },
];

/// Each asset's strong ETag (in `ASSETS`' order, then the page's), from its bytes.
static ETAGS: LazyLock<Vec<EntityTag>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .chain([&PAGE])
        .map(|asset| {
            let hash = xxhash_rust::xxh3::xxh3_128(asset.body);
            EntityTag::new_strong(format!("{hash:032x}"))
        })
        .collect()
});

pub async fn page(req: HttpRequest) -> HttpResponse {
    serve(&req, &PAGE, &ETAGS[ASSETS.len()])
}

pub async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().query("file");
    match ASSETS.iter().position(|asset| asset.name == name) {
        Some(at) => Ok(serve(&req, &ASSETS[at], &ETAGS[at])),
        None => Err(ApiError::RouteNotFound {
            path: req.path().to_owned(),
        }),
    }
}

/// `asset`, or 304 when the client's copy is current: the files change only with the
/// binary, so browsers keep them and ask again (`no-cache`) at each load.
fn serve(req: &HttpRequest, asset: &Asset, etag: &EntityTag) -> HttpResponse {
    let fresh = match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(etag)),
        None => false,
    };
    let status = match fresh {
        true => StatusCode::NOT_MODIFIED,
        false => StatusCode::OK,
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    match fresh {
        true => response.finish(),
        false => response.content_type(asset.content_type).body(asset.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("UTF-8")
    }

    #[test]
    fn the_page_loads_exactly_the_assets_by_relative_paths_and_has_nothing_inline() {
        let page = text(&PAGE);
        let mut loaded: Vec<&str> = page
            .split(['"', '\''])
            .filter_map(|s| s.strip_prefix("docs/"))
            .collect();
        loaded.sort_unstable();
        let mut names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        assert_eq!(loaded, names);
        // Inline code would need a hash in the policy; an attribute handler, `'unsafe-inline'`.
        assert_eq!(page.matches("<script").count(), 2);
        assert_eq!(page.matches("<script src=").count(), 2);
        for inline in ["<style", "style=", "javascript:"] {
            assert!(!page.contains(inline), "{inline}");
        }
        let handler = page
            .split_whitespace()
            .find(|word| word.starts_with("on") && word.contains('='));
        assert_eq!(handler, None);
    }

    #[test]
    fn nothing_we_wrote_names_another_host_and_the_viewer_has_its_licence_beside_it() {
        let init = ASSETS.iter().find(|a| a.name == "docs.js").unwrap();
        for own in [&PAGE, init] {
            assert!(!text(own).contains("://"), "{}", own.name);
        }
        let vendored = concat!(env!("CARGO_MANIFEST_DIR"), "/vendor/swagger-ui");
        let licence = std::fs::read_to_string(format!("{vendored}/LICENSE")).unwrap();
        assert!(licence.contains("Apache License"));
        let notes = std::fs::read_to_string(format!("{vendored}/VENDORED.md")).unwrap();
        assert!(notes.starts_with(&format!("# Swagger UI {SWAGGER_UI_VERSION},")));
        assert!(text(&ASSETS[0]).contains(&format!("\"{SWAGGER_UI_VERSION}\"")));
    }

    #[test]
    fn the_policy_allows_this_service_alone() {
        for directive in CONTENT_SECURITY_POLICY.split("; ") {
            let sources: Vec<&str> = directive.split_whitespace().skip(1).collect();
            for source in sources {
                assert!(
                    ["'self'", "'none'", "data:"].contains(&source),
                    "{directive}"
                );
            }
        }
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none';"));
    }
}
