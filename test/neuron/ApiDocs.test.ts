/**
 * The API documents of both servers: `/openapi.json` lists every route the server answers and nothing it does not
 * (the answered routes found by probing, not read from the same definition), and `/docs` is a page that needs no
 * network beyond the server (its script and styles inline).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Path from "node:path"
import { call, npiOf, startNeuron } from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"
import { documentedRoutes, GUESSES, mentionedPaths, probeRoutes } from "../support/routes.js"

const ROOT = Path.resolve(import.meta.dirname, "../..")

const SAMPLES: Record<string, string> = {
  provider_npi: npiOf(990),
  npi: npiOf(991),
  id: "key_probe",
  registration_id: "00000000-0000-4000-8000-000000000000"
}
const sample = (param: string) => SAMPLES[param] ?? "probe"

/** The platform's answer to a path or method it has no route for, in the project's error body. */
const routeNotFound = (answer: { readonly status: number; readonly body: any }) =>
  answer.status === 404 && answer.body?.error?.code === "NOT_FOUND" && answer.body.error.message === "no such route"

const sorted = (s: ReadonlySet<string>) => [...s].sort()

/** The server's OpenAPI document lists exactly the routes that answer; gives the documented ones. */
const assertDocumentsEveryRoute = (url: string) =>
  Effect.gen(function*() {
    const doc = yield* call(url, "GET", "/openapi.json")
    assert.strictEqual(doc.status, 200)
    const documented = documentedRoutes(doc.body)
    const answered = yield* probeRoutes({
      url,
      documented,
      candidates: [...GUESSES, ...mentionedPaths(ROOT)],
      sample,
      notFound: routeNotFound
    })
    assert.deepStrictEqual(sorted(answered), sorted(documented))
    return documented
  })

describe("API documents", () => {
  it.scopedLive(
    "API docs: the Neuron's /openapi.json lists every route the server answers (found by probing every method on the documented, mentioned and guessed paths) and nothing it doesn't",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url] })
        const documented = yield* assertDocumentsEveryRoute(neuron.url)
        // The routes this issue adds are among them.
        for (const route of ["GET /docs", "POST /v1/api-keys", "GET /v1/api-keys", "DELETE /v1/api-keys/{id}"]) {
          assert.isTrue(documented.has(route), route)
        }
      })
  )

  it.scopedLive(
    "API docs: the registry's /openapi.json lists every route the registry answers and nothing it doesn't, /docs included",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const documented = yield* assertDocumentsEveryRoute(registry.url)
        assert.isTrue(documented.has("GET /docs"))
      })
  )

  it.scopedLive(
    "API docs: GET /docs on the Neuron and the registry is an HTML page built from the same document, with its script and styles inline (no CDN, no external script or stylesheet)",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url] })
        for (const url of [neuron.url, registry.url]) {
          const page = yield* call(url, "GET", "/docs")
          assert.strictEqual(page.status, 200)
          assert.include(page.contentType, "text/html")
          assert.notMatch(page.text, /<script[^>]+src=/i, "no script is loaded from elsewhere")
          assert.notMatch(page.text, /<link[^>]+href=["']?https?:/i, "no stylesheet is loaded from elsewhere")
          assert.include(page.text, "SwaggerUIBundle")
          const doc = (yield* call(url, "GET", "/openapi.json")).body
          for (const path of Object.keys(doc.paths)) assert.include(page.text, JSON.stringify(path), path)
        }
      })
  )
})
