/**
 * `/docs` in a real browser: headless Chromium (Debian's, installed by scripts/ensure-chromium.sh when missing)
 * loads the page of the Neuron and of the registry, with no network beyond the server, and the rendered page shows
 * every route of the OpenAPI document.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { dumpDom, ensureChromium } from "../support/browser.js"
import { call, startNeuron } from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

/** `data-path` of each operation Swagger UI rendered, with its method. */
const renderedRoutes = (dom: string) =>
  new Set(
    [...dom.matchAll(/<div class="opblock opblock-(\w+)[^"]*"[\s\S]*?data-path="([^"]+)"/g)].map((m) =>
      `${m[1]!.toUpperCase()} ${m[2]!}`
    )
  )

describe("API documents in a browser", () => {
  it.scopedLive(
    "API docs: headless Chromium loads /docs of the Neuron and of the registry and finds every route of the OpenAPI document on the rendered page",
    () =>
      Effect.gen(function*() {
        const chromium = ensureChromium()
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url] })
        for (const url of [neuron.url, registry.url]) {
          const doc = (yield* call(url, "GET", "/openapi.json")).body
          const expected = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap((
            [path, item]
          ) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
          const dom = yield* dumpDom(chromium, `${url}/docs`)
          assert.include(dom, doc.info.title, "the page rendered its title")
          const rendered = renderedRoutes(dom)
          for (const route of expected) assert.isTrue(rendered.has(route), `${url}/docs shows ${route}`)
          assert.strictEqual(rendered.size, expected.length)
        }
      }),
    120_000
  )
})
