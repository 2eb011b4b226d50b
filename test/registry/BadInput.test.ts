import type * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { startRegistryWithServices, STORES } from "../support/registry.js"
import { call, callChunked, heartbeat, npi, register, registration } from "./support.js"

const MiB = 1024 * 1024

/** Asserts a `400 INVALID_REQUEST` whose message starts by naming `field`. */
const assertInvalid = (answer: { status: number; body: any; text: string }, field: string, label: string) => {
  assert.strictEqual(answer.status, 400, `${label}: ${answer.text.slice(0, 200)}`)
  assert.strictEqual(answer.body?.error?.code, "INVALID_REQUEST", label)
  assert.isTrue(
    answer.body.error.message.startsWith(`${field}: `),
    `${label}: message should name ${field}: ${answer.body.error.message}`
  )
}

const counts = (sql: SqlClient.SqlClient): Effect.Effect<{ neurons: number; providers: number }> =>
  Effect.map(
    sql<{ neurons: number; providers: number }>`SELECT (SELECT count(*) FROM neurons) AS neurons,
      (SELECT count(*) FROM providers) AS providers`,
    (rows) => rows[0]!
  ).pipe(Effect.orDie)

for (const store of STORES) {
  describe(`bad input is 400 naming the field, and changes nothing (${store})`, () => {
    it.scoped("registration: oversize, invalid JSON, wrong types, SQL-looking, NUL bytes, over-long, missing", () =>
      Effect.gen(function*() {
        const { sql, url } = yield* startRegistryWithServices({ store })
        const before = yield* counts(sql)
        const body = (extra: Record<string, unknown>) => ({ body: registration(1, extra) })
        const cases: Array<[string, string, { body?: unknown; raw?: string }]> = [
          ["oversize (Content-Length)", "body", { raw: JSON.stringify({ organization_name: "x".repeat(MiB + 10) }) }],
          ["invalid JSON", "body", { raw: "{\"organization_npi\": \"1234567893\"," }],
          ["not an object", "body", { raw: "[1,2,3]" }],
          ["empty body", "body", { raw: "" }],
          ["NPI as a number", "organization_npi", body({ organization_npi: 1234567893 })],
          ["NPI with a wrong check digit", "organization_npi", body({ organization_npi: "1234567898" })],
          ["SQL-looking NPI", "organization_npi", body({ organization_npi: "1234567893' OR '1'='1" })],
          ["NUL in the NPI", "organization_npi", body({ organization_npi: "123456789\u00003" })],
          ["name as an object", "organization_name", body({ organization_name: { $ne: null } })],
          ["NUL in the name", "organization_name", body({ organization_name: "Clinic\u0000" })],
          ["over-long name", "organization_name", body({ organization_name: "n".repeat(201) })],
          ["empty name", "organization_name", body({ organization_name: "" })],
          ["SQL-looking type", "organization_type", body({ organization_type: "practice'; DROP TABLE neurons;--" })],
          ["over-long type", "organization_type", body({ organization_type: "t".repeat(65) })],
          [
            "SQL-looking URL",
            "neuron_endpoint_url",
            body({ neuron_endpoint_url: "https://x.org/'; DROP TABLE neurons; --" })
          ],
          ["javascript: URL", "neuron_endpoint_url", body({ neuron_endpoint_url: "javascript:alert(1)" })],
          ["URL with credentials", "neuron_endpoint_url", body({ neuron_endpoint_url: "https://user:pw@x.org" })],
          ["over-long URL", "neuron_endpoint_url", body({ neuron_endpoint_url: "https://x.org/" + "a".repeat(2040) })],
          ["NUL in the URL", "neuron_endpoint_url", body({ neuron_endpoint_url: "https://x.org/\u0000" })],
          ["interval as a string", "heartbeat_interval_s", body({ heartbeat_interval_s: "60" })],
          ["interval as null", "heartbeat_interval_s", body({ heartbeat_interval_s: null })],
          ["interval 0", "heartbeat_interval_s", body({ heartbeat_interval_s: 0 })],
          ["interval 3601", "heartbeat_interval_s", body({ heartbeat_interval_s: 3601 })],
          ["fractional interval", "heartbeat_interval_s", body({ heartbeat_interval_s: 1.5 })],
          ["missing name", "organization_name", {
            body: { organization_npi: npi(1), organization_type: "practice", neuron_endpoint_url: "https://x.org" }
          }]
        ]
        for (const [label, field, options] of cases) {
          assertInvalid(yield* call(url, "POST", "/v1/neurons", options), field, label)
        }
        // A chunked body over 1 MiB (no Content-Length to refuse it by) is refused too.
        const chunk = "x".repeat(256 * 1024)
        const chunked = yield* callChunked(url, "POST", "/v1/neurons", [
          "{\"organization_name\":\"",
          chunk,
          chunk,
          chunk,
          chunk,
          chunk,
          "\"}"
        ])
        assertInvalid(chunked, "body", "chunked oversize")
        const plain = yield* call(url, "POST", "/v1/neurons", {
          raw: "hello",
          headers: { "content-type": "text/plain" }
        })
        assertInvalid(plain, "body", "not JSON")
        assert.deepStrictEqual(yield* counts(sql), before)
        assert.deepStrictEqual((yield* call(url, "GET", "/v1/neurons")).body.neurons, [])
        // The server is still up and serves a valid request.
        assert.strictEqual((yield* call(url, "POST", "/v1/neurons", { body: registration(1) })).status, 201)
      }))

    it.scoped("names with apostrophes and SQL-looking text are data: stored and shown verbatim", () =>
      Effect.gen(function*() {
        const { sql, url } = yield* startRegistryWithServices({ store })
        const name = "O'Brien & D'Arcy Clinic'); DROP TABLE neurons; --"
        const reg = yield* register(url, 1, { extra: { organization_name: name } })
        const view = yield* call(url, "GET", `/v1/neurons/${reg.registration_id}`, { token: reg.bearer_token })
        assert.strictEqual(view.body.organization_name, name)
        yield* call(url, "POST", `/v1/neurons/${reg.registration_id}/providers`, {
          token: reg.bearer_token,
          body: { provider_npi: npi(2), provider_name: "Dr. Ma'ayan O'Neil\" OR 1=1 --" }
        })
        const found = yield* call(url, "GET", `/v1/registry/${npi(2)}`)
        assert.strictEqual(found.body.name, "Dr. Ma'ayan O'Neil\" OR 1=1 --")
        assert.deepStrictEqual(yield* counts(sql), { neurons: 1, providers: 1 })
      }))

    it.scoped("heartbeat: invalid JSON, wrong types, oversize, bad ids are 400 and leave the heartbeat time alone", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistryWithServices({ store })
        const reg = yield* register(url, 1)
        const path = `/v1/neurons/${reg.registration_id}/endpoint`
        const lastBeat = () =>
          Effect.map(
            call(url, "GET", `/v1/neurons/${reg.registration_id}`, { token: reg.bearer_token }),
            (answer) => `${answer.body.last_heartbeat_at} ${answer.body.neuron_endpoint_url}`
          )
        const before = yield* lastBeat()
        const token = reg.bearer_token
        const cases: Array<[string, string, string, { body?: unknown; raw?: string }]> = [
          ["invalid JSON", "body", path, { raw: "{nope" }],
          ["empty body", "body", path, { raw: "" }],
          ["url as a number", "neuron_endpoint_url", path, { body: { neuron_endpoint_url: 42 } }],
          ["missing url", "neuron_endpoint_url", path, { body: {} }],
          ["ftp url", "neuron_endpoint_url", path, { body: { neuron_endpoint_url: "ftp://x.org" } }],
          ["NUL in url", "neuron_endpoint_url", path, { body: { neuron_endpoint_url: "https://x.org\u0000" } }],
          ["oversize", "body", path, {
            raw: JSON.stringify({ neuron_endpoint_url: "https://x.org", pad: "x".repeat(MiB) })
          }],
          ["SQL-looking id", "registration_id", `/v1/neurons/${encodeURIComponent("x' OR '1'='1")}/endpoint`, {
            body: { neuron_endpoint_url: "https://x.org" }
          }],
          ["over-long id", "registration_id", `/v1/neurons/${"a".repeat(129)}/endpoint`, {
            body: { neuron_endpoint_url: "https://x.org" }
          }]
        ]
        for (const [label, field, target, options] of cases) {
          assertInvalid(yield* call(url, "PUT", target, { token, ...options }), field, label)
        }
        const chunked = yield* callChunked(url, "PUT", path, ["{\"neuron_endpoint_url\":", "\"https://x.org\"", "}"], {
          authorization: `Bearer ${token}`
        })
        assert.strictEqual(chunked.status, 200, chunked.text)
        const chunkedTooLarge = yield* callChunked(url, "PUT", path, ["{\"pad\":\"", "x".repeat(MiB), "\"}"], {
          authorization: `Bearer ${token}`
        })
        assertInvalid(chunkedTooLarge, "body", "chunked oversize heartbeat")
        assert.notStrictEqual(yield* lastBeat(), before) // the chunked valid one counted
        const after = yield* lastBeat()
        assertInvalid(yield* call(url, "PUT", path, { token, raw: "[]" }), "body", "array body")
        assert.strictEqual(yield* lastBeat(), after)
        // The same bad body is refused every time (an accepted body is remembered; a refused one never is).
        for (let i = 0; i < 3; i++) {
          assertInvalid(
            yield* call(url, "PUT", path, { token, body: { neuron_endpoint_url: 1 } }),
            "neuron_endpoint_url",
            "again"
          )
        }
        assert.strictEqual((yield* heartbeat(url, reg.registration_id, token, "https://x.org")).status, 200)
      }))

    it.scoped("providers and queries: bad NPIs, types, lengths and parameters are 400 naming the field", () =>
      Effect.gen(function*() {
        const { sql, url } = yield* startRegistryWithServices({ store })
        const reg = yield* register(url, 1)
        const path = `/v1/neurons/${reg.registration_id}/providers`
        const token = reg.bearer_token
        const cases: Array<[string, string, unknown]> = [
          ["SQL-looking provider NPI", "provider_npi", { provider_npi: "1' OR 1=1 --" }],
          ["provider NPI as a number", "provider_npi", { provider_npi: 1558598797 }],
          ["types not an array", "provider_types", { provider_npi: npi(2), provider_types: "physician" }],
          ["SQL-looking type", "provider_types.0", {
            provider_npi: npi(2),
            provider_types: ["x'; DROP TABLE providers"]
          }],
          ["too many types", "provider_types", { provider_npi: npi(2), provider_types: Array(33).fill("physician") }],
          ["over-long name", "provider_name", { provider_npi: npi(2), provider_name: "p".repeat(201) }],
          ["NUL in the name", "provider_name", { provider_npi: npi(2), provider_name: "Dr\u0000" }],
          ["bad endpoint", "provider_endpoint_url", {
            provider_npi: npi(2),
            provider_endpoint_url: "file:///etc/passwd"
          }]
        ]
        for (const [label, field, body] of cases) {
          assertInvalid(yield* call(url, "POST", path, { token, body }), field, label)
        }
        assertInvalid(yield* call(url, "DELETE", `${path}/12345`, { token }), "provider_npi", "bad NPI in the path")
        assertInvalid(yield* call(url, "GET", "/v1/registry/1234567893%27%20OR%201=1"), "npi", "SQL-looking lookup")
        assertInvalid(yield* call(url, "GET", "/v1/neurons?cursor=%00"), "cursor", "NUL in the cursor")
        assertInvalid(yield* call(url, "GET", `/v1/neurons?limit=${"9".repeat(400)}`), "limit", "huge limit")
        assertInvalid(yield* call(url, "GET", "/alerts?since=2026-13-45"), "since", "bad since")
        assert.deepStrictEqual(yield* counts(sql), { neurons: 1, providers: 0 })
      }))
  })
}
