/**
 * `/metrics` after real traffic on a real Neuron: heartbeats that succeed and then fail (the registry stopped),
 * with their backoff delays; a completed and a refused handshake with their latency; SQLite transactions; admin
 * requests by route and status; the handshake queue.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { handshake, handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { call, childScope, neuronWithToken, npiOf, waitFor, waitUntil } from "../support/neuron.js"

const ADMIN = "admin-1d7f3b9e5c2a8046"

/** Prometheus samples: name, labels and value of every line. */
const parse = (text: string) =>
  text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((line) => {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels = Object.fromEntries(
      [...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!])
    )
    return { name: match[1]!, labels, value: Number(match[3]) }
  })

/** The sum of the samples of `name` whose labels include `labels`. */
const value = (text: string, name: string, labels: Record<string, string> = {}) =>
  parse(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0)

describe("/metrics after real traffic", () => {
  it.scopedLive(
    "metrics: heartbeat outcomes, backoff delay, handshake outcomes by code with a latency histogram, queue length, SQLite transaction time and API requests by route and status, scraped from a real Neuron",
    () =>
      Effect.gen(function*() {
        const registryScope = yield* childScope
        const { neuron } = yield* neuronWithToken({
          token: ADMIN,
          registryScope,
          overrides: { heartbeatInterval: "1 second", backoffBase: "50 millis", backoffCeiling: "200 millis" }
        })
        const scrape = Effect.map(call(neuron.url, "GET", "/metrics"), (a) => a.text)
        const provider = npiOf(501)
        assert.strictEqual(
          (yield* call(neuron.url, "POST", "/v1/providers", { token: ADMIN, body: { provider_npi: provider } })).status,
          201
        )
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", { token: ADMIN })).status, 200)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", { token: ADMIN })).status, 200)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status")).status, 401)
        assert.strictEqual(
          (yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(502)}`, { token: ADMIN })).status,
          404
        )
        assert.strictEqual((yield* call(neuron.url, "GET", "/no/such/route")).status, 404)

        const request = {
          url: handshakeUrl(neuron.url),
          patient_agent_id: "patient-metrics-1",
          consented_actions: ["read:records"],
          patient_endpoint: "https://patient.example/agent"
        }
        yield* handshake({ ...request, key: yield* makePatientKey, provider_npi: provider })
        const refused = yield* handshake({ ...request, key: yield* makePatientKey, provider_npi: npiOf(503) }).pipe(
          Effect.flip
        )
        assert.strictEqual(refused.code, "PROVIDER_NOT_FOUND")

        // A steady heartbeat, then the registry goes away: failures, each followed by a backoff delay.
        yield* waitUntil(
          "a successful heartbeat",
          Effect.map(scrape, (t) => value(t, "neuron_heartbeats_total", { outcome: "ok" }) >= 1)
        )
        yield* Scope.close(registryScope, Exit.void)
        const text = yield* waitFor(
          "failed heartbeats with their backoff delays",
          Effect.map(scrape, (t) =>
            value(t, "neuron_heartbeats_total", { outcome: "failed" }) >= 2 &&
              value(t, "neuron_heartbeat_backoff_delay_seconds_count") >= 2
              ? Option.some(t)
              : Option.none())
        )

        const delays = value(text, "neuron_heartbeat_backoff_delay_seconds_sum")
        assert.isAbove(delays, 0)
        // Every delay is at or under the 200 ms ceiling.
        assert.isAtMost(delays / value(text, "neuron_heartbeat_backoff_delay_seconds_count"), 0.2)
        assert.strictEqual(
          value(text, "neuron_heartbeat_backoff_delay_seconds_bucket", { le: "1" }),
          value(text, "neuron_heartbeat_backoff_delay_seconds_count")
        )

        assert.strictEqual(value(text, "neuron_handshake_duration_seconds_count", { outcome: "completed" }), 1)
        assert.strictEqual(value(text, "neuron_handshake_duration_seconds_count", { outcome: "PROVIDER_NOT_FOUND" }), 1)
        assert.isAbove(value(text, "neuron_handshake_duration_seconds_sum", { outcome: "completed" }), 0)
        assert.strictEqual(
          value(text, "neuron_handshake_duration_seconds_bucket", { outcome: "completed", le: "+Inf" }),
          1
        )
        assert.include(text, "neuron_handshake_queue_length 0")

        // Registration, registered and the provider: three lifecycle transactions at least; one handshake commit.
        assert.isAtLeast(value(text, "neuron_sqlite_transaction_seconds_count", { operation: "lifecycle" }), 3)
        assert.strictEqual(value(text, "neuron_sqlite_transaction_seconds_count", { operation: "handshake" }), 1)
        // The one handshake, alone in its group-committed transaction.
        assert.strictEqual(value(text, "neuron_sqlite_group_commit_size_count", { operation: "handshake" }), 1)
        assert.strictEqual(value(text, "neuron_sqlite_group_commit_size_sum", { operation: "handshake" }), 1)
        assert.isAbove(value(text, "neuron_sqlite_transaction_seconds_sum", { operation: "lifecycle" }), 0)

        const requests = (labels: Record<string, string>) => value(text, "neuron_api_requests_total", labels)
        assert.strictEqual(requests({ method: "GET", route: "/v1/status", status: "200" }), 2)
        assert.strictEqual(requests({ method: "GET", route: "/v1/status", status: "401" }), 1)
        assert.strictEqual(requests({ method: "POST", route: "/v1/providers", status: "201" }), 1)
        assert.strictEqual(requests({ method: "DELETE", route: "/v1/providers/{provider_npi}", status: "404" }), 1)
        assert.strictEqual(requests({ method: "GET", route: "unmatched", status: "404" }), 1)
        assert.isAtLeast(requests({ method: "GET", route: "/metrics", status: "200" }), 1)
        assert.strictEqual(requests({ route: "/ws/handshake" }), 0, "the handshake has its own metrics")
        assert.isAtLeast(value(text, "neuron_api_request_duration_seconds_count", { route: "/v1/status" }), 3)
      })
  )
})
