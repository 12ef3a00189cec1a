use actix_web::{HttpResponse, get, web};

/// The OpenAPI document (YAML), generated once at start-up.
pub struct OpenApiYaml(pub String);

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "OpenAPI document", content_type = "application/yaml", body = String))
)]
#[get("/openapi.yaml")]
#[tracing::instrument(skip_all)]
pub async fn serve_openapi(doc: web::Data<OpenApiYaml>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(doc.0.clone())
}
