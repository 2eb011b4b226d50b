/**
 * Serves `/openapi.json` and `/docs` (Swagger UI, inlined by `@effect/platform`: no CDN, works offline) for the
 * `HttpApi` being served. Give it to `HttpApiBuilder.serve`.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as Layer from "effect/Layer"
import { DOCS_PATH, OPENAPI_PATH } from "./ApiDocs.js"

/** The two document routes. */
export const layer = Layer.mergeAll(
  HttpApiBuilder.middlewareOpenApi({ path: OPENAPI_PATH }),
  HttpApiSwagger.layer({ path: DOCS_PATH })
)
