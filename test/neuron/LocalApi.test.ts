/**
 * The Neuron's local HTTP API as an operator's script uses it (PROTOCOL.md section 3), on a real Neuron with the
 * real registry: the admin rule, providers added and removed with the registry there and away, bad input refused
 * with the field named and nothing stored, status, metrics, and the error body of an unknown route.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Os from "node:os"
import { call, childScope, npiOf, readHealthFile, readRecords, startNeuron, untilHealthy } from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

/** The first non-loopback IPv4 address of this machine, if it has one. */
const externalAddress = (): string | undefined =>
  Object.values(Os.networkInterfaces()).flat().find((a) => a !== undefined && a.family === "IPv4" && !a.internal)
    ?.address

const ADMIN_TOKEN = "clinic-admin-7f3c9a1e5b2d4e60"

describe("Neuron local HTTP API", () => {
  it.scopedLive(
    "admin rule: without NEURON_ADMIN_TOKEN loopback peers are allowed and others get 403; with it, 401 without or with a wrong token and 200 with it; /health stays open",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const open = yield* startNeuron({ registryUrls: [registry.url], host: "0.0.0.0" })
        assert.strictEqual((yield* call(open.url, "GET", "/v1/status")).status, 200)
        assert.strictEqual((yield* call(open.url, "GET", "/v1/providers")).status, 200)
        const external = externalAddress()
        assert.isDefined(external, "this test needs a non-loopback IPv4 address to call from")
        const port = new URL(open.url).port
        const remote = yield* call(`http://${external}:${port}`, "GET", "/v1/status")
        assert.strictEqual(remote.status, 403)
        assert.strictEqual(remote.body.error.code, "FORBIDDEN")
        assert.strictEqual((yield* call(`http://${external}:${port}`, "GET", "/health")).status, 200)

        const guarded = yield* startNeuron({
          registryUrls: [registry.url],
          organization: { npi: npiOf(702), name: "Lakeside Clinic" },
          overrides: { adminToken: Option.some(Redacted.make(ADMIN_TOKEN)) }
        })
        for (const path of ["/v1/status", "/v1/providers", "/v1/relationships"]) {
          const without = yield* call(guarded.url, "GET", path)
          assert.strictEqual(without.status, 401, path)
          assert.strictEqual(without.body.error.code, "UNAUTHORIZED")
          assert.strictEqual((yield* call(guarded.url, "GET", path, { token: "wrong-token-123456" })).status, 401)
          assert.strictEqual((yield* call(guarded.url, "GET", path, { token: ADMIN_TOKEN })).status, 200, path)
        }
        const post = yield* call(guarded.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(51) } })
        assert.strictEqual(post.status, 401)
        assert.deepStrictEqual((yield* readRecords(guarded.dataDir)).providers, [])
        assert.strictEqual((yield* call(guarded.url, "GET", "/health")).status, 200)
      })
  )

  it.scopedLive(
    "POST /v1/providers answers 201 with the registry, 202 pending without it, and 400 naming the field (bad NPI, bad URL) with nothing stored; DELETE answers 204, 202 while the registry is away, and 404 for an unknown NPI",
    () =>
      Effect.gen(function*() {
        const registryScope = yield* childScope
        const registry = yield* startRegistry().pipe(Scope.extend(registryScope))
        const neuron = yield* startNeuron({ registryUrls: [registry.url], overrides: { backoffCeiling: "1 second" } })
        yield* untilHealthy(neuron.url)

        const created = yield* call(neuron.url, "POST", "/v1/providers", {
          body: {
            provider_npi: npiOf(61),
            provider_name: "Dr. Priya Raman",
            provider_types: ["physician"],
            specialty: "cardiology",
            provider_endpoint_url: "https://raman.riverside.test"
          }
        })
        assert.strictEqual(created.status, 201)
        assert.deepInclude(created.body.provider, {
          provider_npi: npiOf(61),
          provider_name: "Dr. Priya Raman",
          provider_types: ["physician"],
          specialty: "cardiology",
          provider_endpoint_url: "https://raman.riverside.test",
          status: "registered",
          last_error: null
        })
        assert.isString(created.body.provider.provider_id)
        assert.strictEqual(
          (yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(62) } })).status,
          201
        )

        // Bad input: 400, the field named, nothing stored.
        const before = yield* readRecords(neuron.dataDir)
        const bads = [
          [{ provider_npi: "1234567898" }, "provider_npi"],
          [{ provider_npi: npiOf(63), provider_endpoint_url: "ftp://raman.riverside.test" }, "provider_endpoint_url"],
          [{ provider_npi: npiOf(63), provider_endpoint_url: "not a url" }, "provider_endpoint_url"],
          [{ provider_name: "Dr. Nobody" }, "provider_npi"]
        ] as const
        for (const [body, field] of bads) {
          const answer = yield* call(neuron.url, "POST", "/v1/providers", { body })
          assert.strictEqual(answer.status, 400, JSON.stringify(body))
          assert.strictEqual(answer.body.error.code, "INVALID_REQUEST")
          assert.include(answer.body.error.message, field)
        }
        const notJson = yield* call(neuron.url, "POST", "/v1/providers", { raw: `{"provider_npi": "${npiOf(63)}"` })
        assert.strictEqual(notJson.status, 400)
        assert.strictEqual(notJson.body.error.code, "INVALID_REQUEST")
        const after = yield* readRecords(neuron.dataDir)
        assert.deepStrictEqual(after.providers, before.providers)
        assert.deepStrictEqual(after.events, before.events)

        // DELETE with the registry there: 204, and the registry no longer has it.
        const removed = yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(61)}`)
        assert.strictEqual(removed.status, 204)
        assert.strictEqual((yield* call(registry.url, "GET", `/v1/registry/${npiOf(61)}`)).status, 404)
        const unknown = yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(69)}`)
        assert.strictEqual(unknown.status, 404)
        assert.strictEqual(unknown.body.error.code, "NOT_FOUND")
        assert.strictEqual((yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(61)}`)).status, 404)
        assert.strictEqual((yield* call(neuron.url, "DELETE", "/v1/providers/12345")).status, 400)

        // The registry goes away: removals and additions are kept, 202.
        yield* Scope.close(registryScope, Exit.void)
        const removing = yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(62)}`)
        assert.strictEqual(removing.status, 202)
        assert.deepStrictEqual(removing.body, { provider_npi: npiOf(62), status: "removing" })
        const pending = yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(64) } })
        assert.strictEqual(pending.status, 202)
        assert.strictEqual(pending.body.provider.status, "pending")
        const listed = (yield* call(neuron.url, "GET", "/v1/providers")).body.providers
        assert.deepStrictEqual(listed.map((p: any) => [p.provider_npi, p.status]), [
          [npiOf(62), "removing"],
          [npiOf(64), "pending"]
        ])
        const status = (yield* call(neuron.url, "GET", "/v1/status")).body
        assert.deepStrictEqual(status.providers, { pending: 1, registered: 0, removing: 1 })
        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        assert.deepStrictEqual(records.events.slice(2), [
          "ProviderAdded",
          "ProviderRegistered",
          "ProviderAdded",
          "ProviderRegistered",
          "ProviderRemovalRequested",
          "ProviderRemoved",
          "ProviderRemovalRequested",
          "ProviderAdded"
        ])
        assert.deepInclude(yield* readHealthFile(neuron.dataDir), { registration: "registered" })
      })
  )

  it.scopedLive(
    "GET /v1/status never contains the bearer token; /metrics is Prometheus text; an unknown route is 404 with the JSON error body",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url] })
        yield* untilHealthy(neuron.url)
        yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(71) } })
        const token = (yield* readRecords(neuron.dataDir)).bearerToken!
        assert.isString(token)

        const status = yield* call(neuron.url, "GET", "/v1/status")
        assert.strictEqual(status.status, 200)
        assert.notInclude(status.text, token)
        assert.deepInclude(status.body, { registration: "registered", active_handshakes: [] })
        assert.deepInclude(status.body.heartbeat, { status: "healthy", consecutive_failures: 0 })
        assert.deepStrictEqual(Object.keys(status.body).sort(), [
          "active_handshakes",
          "axon_url",
          "heartbeat",
          "organization_npi",
          "providers",
          "registration",
          "registration_id"
        ])

        const metrics = yield* call(neuron.url, "GET", "/metrics")
        assert.strictEqual(metrics.status, 200)
        assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/)
        assert.notInclude(metrics.text, token)
        const lines = metrics.text.split("\n")
        for (const line of ["neuron_healthy 1", "neuron_heartbeat_consecutive_failures 0"]) assert.include(lines, line)
        assert.include(lines, "# TYPE neuron_healthy gauge")
        assert.include(lines, `neuron_registration_state{state="registered"} 1`)
        assert.include(lines, `neuron_providers{status="registered"} 1`)
        assert.include(lines, "neuron_active_handshakes 0")
        // Every sample line is `name{labels} value` with a number.
        for (const line of lines.filter((l) => l !== "" && !l.startsWith("#"))) {
          assert.match(line, /^[a-z_]+(\{[^}]*\})? -?[0-9.e+]+$/, line)
        }

        const unknown = yield* call(neuron.url, "GET", "/v1/nothing-here")
        assert.strictEqual(unknown.status, 404)
        assert.match(unknown.contentType, /application\/json/)
        assert.strictEqual(unknown.body.error.code, "NOT_FOUND")
        assert.isString(unknown.body.error.message)
        assert.notInclude(unknown.text, token)
      })
  )
})
