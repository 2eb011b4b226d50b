/**
 * The API documents both servers publish: `GET /openapi.json` (the OpenAPI 3.1 document of their `HttpApi`) and
 * `GET /docs` (Swagger UI, which `@effect/platform` ships with its script and styles inlined, so the page works
 * with no network beyond the server itself). Routes a server answers beside its `HttpApi` (the documents
 * themselves, `/metrics`, the handshake WebSocket) are added to the document here, so that it lists every route.
 * (The serving layer is in `ApiDocsRoutes.ts`, so that the wire contract does not load Swagger UI's 2 MB script.)
 */
import * as OpenApi from "@effect/platform/OpenApi"

/** Where the documents are served. */
export const OPENAPI_PATH = "/openapi.json"
export const DOCS_PATH = "/docs"

/** One OpenAPI path item for a GET route served beside the `HttpApi`. */
export const getRoute = (options: {
  readonly operationId: string
  readonly tag: string
  readonly description: string
  readonly responses: Record<string, { readonly description: string; readonly contentType?: string }>
}) => ({
  get: {
    tags: [options.tag],
    operationId: options.operationId,
    description: options.description,
    parameters: [],
    security: [],
    responses: Object.fromEntries(
      Object.entries(options.responses).map(([status, r]) => [
        status,
        r.contentType === undefined
          ? { description: r.description }
          : { description: r.description, content: { [r.contentType]: { schema: { type: "string" } } } }
      ])
    )
  }
})

/** The two documents' own entries. */
const documents = {
  [OPENAPI_PATH]: getRoute({
    operationId: "openapi",
    tag: "documents",
    description: "This OpenAPI document.",
    responses: { 200: { description: "The OpenAPI 3.1 document", contentType: "application/json" } }
  }),
  [DOCS_PATH]: getRoute({
    operationId: "docs",
    tag: "documents",
    description: "This document as a page to read in a browser (Swagger UI, served inline: no network needed).",
    responses: { 200: { description: "An HTML page", contentType: "text/html" } }
  })
}

/**
 * An annotation for an `HttpApi`: adds the documents and `beside` (more routes served outside the `HttpApi`) to
 * its OpenAPI document, after the generated paths.
 */
export const withRoutesBeside = (beside: Record<string, unknown> = {}) =>
  OpenApi.Transform.of((spec) => ({ ...spec, paths: { ...spec.paths, ...beside, ...documents } }))
