/**
 * The Neuron starting up as a clinic would see it: against the real Axon registry (its own HTTP server on port 0,
 * its own SQLite folder), with the Neuron's real HTTP server, SQLite file and health file. After each scenario:
 * the registry's view, the health file, the event log and the audit chain.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Sqlite from "../../src/sql/Sqlite.js"
import {
  call,
  childScope,
  CLINIC,
  freePort,
  npiOf,
  readHealthFile,
  readRecords,
  startNeuron,
  startRegistryOn,
  waitFor,
  waitUntil
} from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

/** The registry's live neurons for the clinic's NPI (public discovery). */
const registeredNeurons = (registryUrl: string) =>
  Effect.map(
    call(registryUrl, "GET", `/v1/neurons?organization_npi=${CLINIC.npi}`),
    (answer) => answer.body.neurons as ReadonlyArray<{ registration_id: string; status: string }>
  )

/** Waits for `/health` to say healthy and returns it. */
const healthy = (url: string) =>
  waitFor(
    "the Neuron to be healthy",
    Effect.map(call(url, "GET", "/health"), (a) => (a.body?.status === "healthy" ? Option.some(a.body) : Option.none()))
  )

/** The fields of the health file that do not depend on the clock. */
const healthShape = (file: any) => ({
  status: file.status,
  registration: file.registration,
  consecutive_failures: file.consecutive_failures,
  has_last_heartbeat: file.last_heartbeat_at !== null,
  has_next_attempt: file.next_attempt_at !== null
})

describe("Neuron first boot and restart (the health file, event log and audit chain after each)", () => {
  it.scopedLive(
    "first boot registers once, heartbeats, the health file says healthy, the event log has RegistrationStarted and Registered, and the audit chain verifies",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [registry.url] })
        const health = yield* healthy(neuron.url)
        assert.deepStrictEqual(health.registration, "registered")
        assert.isString(health.last_heartbeat_at)

        const neurons = yield* registeredNeurons(registry.url)
        assert.strictEqual(neurons.length, 1)
        const status = (yield* call(neuron.url, "GET", "/v1/status")).body
        assert.strictEqual(status.registration_id, neurons[0]!.registration_id)
        assert.strictEqual(status.axon_url, registry.url)
        // The registry has seen the heartbeat (not only the registration).
        const view = yield* call(registry.url, "GET", `/v1/registry/${CLINIC.npi}`)
        assert.strictEqual(view.body.status, "reachable")
        assert.strictEqual(view.body.neuron_endpoint.url, neuron.settings.publicUrl)

        // The beat's success and the next planned attempt are two writes: wait for the second.
        const file = yield* waitFor(
          "the health file to plan the next beat",
          Effect.map(readHealthFile(neuron.dataDir), (f) => Option.fromNullable(f?.next_attempt_at ? f : null))
        )
        assert.deepStrictEqual(healthShape(file), {
          status: "healthy",
          registration: "registered",
          consecutive_failures: 0,
          has_last_heartbeat: true,
          has_next_attempt: true
        })
        // The next beat is planned one steady interval after the last one.
        assert.strictEqual(Date.parse(file.next_attempt_at) - Date.parse(file.last_heartbeat_at) >= 59_000, true)

        const records = yield* readRecords(neuron.dataDir)
        assert.deepStrictEqual(records.events, ["RegistrationStarted", "Registered"])
        assert.deepInclude(records.verification, { ok: true, entries: 2 })
        assert.strictEqual(records.registration.registration_id, neurons[0]!.registration_id)
        assert.strictEqual(records.registration.state, "registered")
      })
  )

  it.scopedLive(
    "restart without a second registration (in process, same data folder): same registration_id, one Registered event, and the stopped Neuron's health file says stopped",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const dataDir = yield* Sqlite.makeTempDir("neuron-")
        const first = yield* childScope
        const one = yield* startNeuron({ registryUrls: [registry.url], dataDir }).pipe(Scope.extend(first))
        yield* healthy(one.url)
        const id = (yield* call(one.url, "GET", "/v1/status")).body.registration_id as string
        yield* Scope.close(first, Exit.void)
        assert.deepInclude(yield* readHealthFile(dataDir), { status: "stopped", registration: "registered" })

        const two = yield* startNeuron({ registryUrls: [registry.url], dataDir })
        yield* healthy(two.url)
        assert.strictEqual((yield* call(two.url, "GET", "/v1/status")).body.registration_id, id)
        const neurons = yield* registeredNeurons(registry.url)
        assert.deepStrictEqual(neurons.map((n) => n.registration_id), [id])
        const records = yield* readRecords(dataDir)
        assert.deepStrictEqual(records.events, ["RegistrationStarted", "Registered"])
        assert.deepInclude(records.verification, { ok: true, entries: 2 })
        assert.deepInclude(yield* readHealthFile(dataDir), { status: "healthy", registration: "registered" })
      })
  )
})

describe("Neuron with the registry away (the health file, event log and audit chain after each)", () => {
  it.scopedLive(
    "registry down at boot then up: degraded, keeps serving /health and the admin API, registers (with the provider added meanwhile) without a restart when the registry comes up on that port",
    () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const neuron = yield* startNeuron({
          registryUrls: [`http://127.0.0.1:${port}`],
          overrides: { backoffBase: "50 millis", backoffCeiling: "200 millis" }
        })
        // Several attempts have failed, and the Neuron answers all the while.
        yield* waitUntil(
          "two failed attempts",
          Effect.map(readHealthFile(neuron.dataDir), (f) => f?.consecutive_failures >= 2)
        )
        const down = yield* call(neuron.url, "GET", "/health")
        assert.strictEqual(down.status, 200)
        assert.deepStrictEqual(down.body, { status: "degraded", registration: "registering", last_heartbeat_at: null })
        const file = yield* readHealthFile(neuron.dataDir)
        assert.deepInclude(file, { status: "degraded", registration: "registering", last_heartbeat_at: null })
        assert.isString(file.next_attempt_at)
        // The operator's work goes on meanwhile.
        const added = yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(5) } })
        assert.strictEqual(added.status, 202)

        const registry = yield* startRegistryOn(port)
        const health = yield* healthy(neuron.url)
        assert.strictEqual(health.registration, "registered")
        assert.strictEqual((yield* registeredNeurons(registry.url)).length, 1)
        const provider = yield* call(registry.url, "GET", `/v1/registry/${npiOf(5)}`)
        assert.deepInclude(provider.body, { npi: npiOf(5), organization_npi: CLINIC.npi })
        assert.deepInclude(yield* readHealthFile(neuron.dataDir), {
          status: "healthy",
          registration: "registered",
          consecutive_failures: 0
        })
        // The retries made no events: one registration, started once.
        const records = yield* readRecords(neuron.dataDir)
        assert.deepStrictEqual(records.events, [
          "RegistrationStarted",
          "ProviderAdded",
          "Registered",
          "ProviderRegistered"
        ])
        assert.isTrue(records.verification.ok)
      })
  )

  it.scopedLive(
    "failover to a second registry URL: the first a closed port, the second the real registry, which holds the registration",
    () =>
      Effect.gen(function*() {
        const closed = `http://127.0.0.1:${yield* freePort}`
        const registry = yield* startRegistry()
        const neuron = yield* startNeuron({ registryUrls: [closed, registry.url] })
        yield* healthy(neuron.url)
        const status = (yield* call(neuron.url, "GET", "/v1/status")).body
        assert.strictEqual(status.axon_url, registry.url)
        assert.strictEqual((yield* registeredNeurons(registry.url))[0]!.registration_id, status.registration_id)
        // The provider calls go to the registry that answers too.
        const added = yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: npiOf(1) } })
        assert.strictEqual(added.status, 201)
        assert.deepInclude(yield* readHealthFile(neuron.dataDir), { status: "healthy", registration: "registered" })
        const records = yield* readRecords(neuron.dataDir)
        assert.deepStrictEqual(records.events, [
          "RegistrationStarted",
          "Registered",
          "ProviderAdded",
          "ProviderRegistered"
        ])
        assert.isTrue(records.verification.ok)
        assert.include(JSON.stringify(records.eventRows[1]), registry.url)
      })
  )

  it.scopedLive(
    "a provider added while degraded is stored pending (202), survives a restart, and is synced later: registered and listed by the registry when it answers",
    () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const registryUrl = `http://127.0.0.1:${port}`
        const dataDir = yield* Sqlite.makeTempDir("neuron-")
        const overrides = { backoffBase: "50 millis", backoffCeiling: "200 millis" } as const
        const first = yield* childScope
        const one = yield* startNeuron({ registryUrls: [registryUrl], dataDir, overrides }).pipe(Scope.extend(first))
        const provider = { provider_npi: npiOf(11), provider_name: "Dr. Ada Moreno", provider_types: ["physician"] }
        const added = yield* call(one.url, "POST", "/v1/providers", { body: provider })
        assert.strictEqual(added.status, 202)
        assert.deepInclude(added.body.provider, { provider_npi: npiOf(11), status: "pending", provider_id: null })
        const listed = (yield* call(one.url, "GET", "/v1/providers")).body.providers
        assert.deepStrictEqual(listed.map((p: any) => [p.provider_npi, p.status]), [[npiOf(11), "pending"]])
        yield* Scope.close(first, Exit.void)
        assert.deepInclude(yield* readHealthFile(dataDir), { status: "stopped", registration: "registering" })

        // The registry comes back, and so does the Neuron (a new run on the same folder).
        const registry = yield* startRegistryOn(port)
        const two = yield* startNeuron({ registryUrls: [registryUrl], dataDir, overrides })
        yield* healthy(two.url)
        const status = (yield* call(two.url, "GET", "/v1/status")).body
        const remote = yield* waitFor(
          "the registry to list the provider",
          Effect.map(
            call(registry.url, "GET", `/v1/registry/${npiOf(11)}`),
            (a) => (a.status === 200 ? Option.some(a.body) : Option.none())
          )
        )
        assert.deepInclude(remote, { npi: npiOf(11), entity_type: "provider", organization_npi: CLINIC.npi })
        const mine = (yield* call(two.url, "GET", "/v1/providers")).body.providers
        assert.deepStrictEqual(mine.map((p: any) => [p.provider_npi, p.status]), [[npiOf(11), "registered"]])
        assert.deepStrictEqual(status.providers, { pending: 0, registered: 1, removing: 0 })
        const records = yield* readRecords(dataDir)
        // The registry's own provider list for this registration (read with the Neuron's token, as the Neuron does).
        const list = yield* call(registry.url, "GET", `/v1/neurons/${status.registration_id}/providers`, {
          token: records.bearerToken!
        })
        assert.deepStrictEqual(list.body.providers.map((p: any) => [p.provider_npi, p.provider_name]), [
          [npiOf(11), "Dr. Ada Moreno"]
        ])
        assert.deepStrictEqual(records.events, [
          "RegistrationStarted",
          "ProviderAdded",
          "Registered",
          "ProviderRegistered"
        ])
        assert.isTrue(records.verification.ok)
        assert.deepInclude(yield* readHealthFile(dataDir), { status: "healthy", registration: "registered" })
      })
  )
})
