/**
 * The registry taking the registration away, and refusing it, with the real registry: deregistration by its TTL
 * followed by the Neuron registering again with every provider, and a conflict that leaves the Neuron serving and
 * waiting for the operator. The health file, the event log and the audit chain after each.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { call, CLINIC, npiOf, readHealthFile, readRecords, startNeuron, waitFor, waitUntil } from "../support/neuron.js"
import { expireByTtl, startRegistryWithServices } from "../support/registry.js"

describe("Neuron and the registry's liveness (the health file, event log and audit chain after each)", () => {
  it.scopedLive(
    "deregistration by the registry's TTL, then automatic re-registration with providers: the next beat gets 404, the Neuron registers again and re-registers every provider",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistryWithServices()
        const neuron = yield* startNeuron({
          registryUrls: [registry.url],
          overrides: { heartbeatInterval: "1 second", backoffBase: "50 millis", backoffCeiling: "200 millis" }
        })
        yield* waitUntil(
          "registered",
          Effect.map(call(neuron.url, "GET", "/health"), (a) => a.body?.status === "healthy")
        )
        for (const [n, name] of [[31, "Dr. Lena Ortiz"], [32, "Dr. Sam Whitfield"]] as const) {
          const added = yield* call(neuron.url, "POST", "/v1/providers", {
            body: { provider_npi: npiOf(n), provider_name: name, provider_types: ["physician"] }
          })
          assert.strictEqual(added.status, 201)
        }
        const first = (yield* call(neuron.url, "GET", "/v1/status")).body.registration_id as string

        // The registry stops hearing from the neuron for more than 3 intervals (its clock says so), and sweeps.
        yield* expireByTtl(registry, first)
        const alerts = (yield* call(registry.url, "GET", "/alerts")).body.alerts
        assert.include(alerts.map((a: any) => `${a.alert_type} ${a.registration_id}`), `neuron_deregistered ${first}`)

        // The Neuron notices at its next beat (404) and registers again, with its providers.
        const second = yield* waitFor(
          "a new live registration",
          Effect.map(
            call(registry.url, "GET", `/v1/neurons?organization_npi=${CLINIC.npi}`),
            (a) => Option.fromNullable(a.body.neurons.find((n: any) => n.registration_id !== first)?.registration_id)
          )
        )
        yield* waitUntil(
          "the Neuron to use the new registration",
          Effect.map(call(neuron.url, "GET", "/v1/status"), (a) =>
            a.body.registration_id === second && a.body.heartbeat.status === "healthy")
        )
        const token = (yield* readRecords(neuron.dataDir)).bearerToken!
        const listed = yield* waitFor(
          "the registry to list both providers under the new registration",
          Effect.map(call(registry.url, "GET", `/v1/neurons/${second}/providers`, { token }), (a) =>
            a.body.providers.length === 2 ? Option.some(a.body.providers) : Option.none())
        )
        assert.deepStrictEqual(listed.map((p: any) => [p.provider_npi, p.provider_name]).sort(), [
          [npiOf(31), "Dr. Lena Ortiz"],
          [npiOf(32), "Dr. Sam Whitfield"]
        ])
        // Discovery finds the providers again, under the new registration.
        const found = yield* call(registry.url, "GET", `/v1/registry/${npiOf(31)}`)
        assert.deepInclude(found.body, { npi: npiOf(31), organization_npi: CLINIC.npi, status: "reachable" })

        // The Neuron records each provider's new id as the registry answers.
        const records = yield* waitFor(
          "both providers recorded under the new registration",
          Effect.map(readRecords(neuron.dataDir), (r) =>
            r.events.slice(r.events.indexOf("RegistrationLost")).filter((e) =>
                e === "ProviderRegistered"
              ).length === 2
              ? Option.some(r)
              : Option.none())
        )
        const status = (yield* call(neuron.url, "GET", "/v1/status")).body
        assert.deepStrictEqual(status.providers, { pending: 0, registered: 2, removing: 0 })
        assert.deepInclude(yield* readHealthFile(neuron.dataDir), { status: "healthy", registration: "registered" })
        // The loss is one event; the second registration and the providers' new ids follow it.
        const afterLoss = records.events.slice(records.events.indexOf("RegistrationLost"))
        assert.deepStrictEqual(afterLoss, [
          "RegistrationLost",
          "RegistrationStarted",
          "Registered",
          "ProviderRegistered",
          "ProviderRegistered"
        ])
        assert.deepStrictEqual(records.events.slice(0, 2), ["RegistrationStarted", "Registered"])
        assert.strictEqual(
          records.events.filter((e) =>
            e === "RegistrationLost"
          ).length,
          1
        )
        assert.isTrue(records.verification.ok)
        assert.strictEqual(records.registration.registration_id, second)
      })
  )

  it.scopedLive(
    "a conflict: the organization NPI already registered by another client in a development-mode registry gives lifecycle conflict in the health file and /health, no retry storm, and the Neuron keeps serving",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistryWithServices()
        const other = yield* call(registry.url, "POST", "/v1/neurons", {
          body: {
            organization_npi: CLINIC.npi,
            organization_name: "Someone Else",
            organization_type: "practice",
            neuron_endpoint_url: "https://elsewhere.test"
          }
        })
        assert.strictEqual(other.status, 201)
        const ceilingMs = 100
        const neuron = yield* startNeuron({
          registryUrls: [registry.url],
          overrides: { backoffBase: "10 millis", backoffCeiling: `${ceilingMs} millis` }
        })
        const health = yield* waitFor(
          "the conflict",
          Effect.map(
            call(neuron.url, "GET", "/health"),
            (a) => (a.body?.registration === "conflict" ? Option.some(a) : Option.none())
          )
        )
        assert.strictEqual(health.status, 200)
        assert.deepStrictEqual(health.body, { status: "degraded", registration: "conflict", last_heartbeat_at: null })

        // Attempts come no faster than one per ceiling (each waits a full ceiling: the bound cannot be beaten).
        const startedAt = Date.now()
        const before = (yield* readHealthFile(neuron.dataDir)).consecutive_failures as number
        yield* Effect.sleep("600 millis")
        const after = (yield* readHealthFile(neuron.dataDir)).consecutive_failures as number
        assert.isAtMost(after - before, 1 + Math.ceil((Date.now() - startedAt) / ceilingMs))
        assert.isAtLeast(after, 2) // and it does keep asking, for when the operator has cleared it

        // Still serving: health, status, and an operator's provider kept pending.
        const file = yield* readHealthFile(neuron.dataDir)
        assert.deepInclude(file, { status: "degraded", registration: "conflict", last_heartbeat_at: null })
        const status = yield* call(neuron.url, "GET", "/v1/status")
        assert.deepInclude(status.body, { registration: "conflict", registration_id: null })
        const added = yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(41) } })
        assert.strictEqual(added.status, 202)
        // The registry still holds only the other client's registration.
        const neurons = (yield* call(registry.url, "GET", `/v1/neurons?organization_npi=${CLINIC.npi}`)).body.neurons
        assert.deepStrictEqual(neurons.map((n: any) => n.registration_id), [other.body.registration_id])

        const records = yield* readRecords(neuron.dataDir)
        assert.deepStrictEqual(records.events, ["RegistrationStarted", "ConflictDetected", "ProviderAdded"])
        assert.isTrue(records.verification.ok)
        assert.match(String(records.registration.last_error), /409|already registered/i)
      })
  )
})
