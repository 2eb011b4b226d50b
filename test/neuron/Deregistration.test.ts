/**
 * Decommissioning: the operator (through the host program's `Neuron` service) deregisters the Neuron on purpose.
 * The registry forgets it, the heartbeat idles instead of registering again (also after a restart), and an explicit
 * `register` brings it back with its providers.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Sqlite from "../../src/sql/Sqlite.js"
import {
  call,
  childScope,
  CLINIC,
  npiOf,
  readHealthFile,
  readRecords,
  startNeuron,
  waitUntil
} from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

const liveNeurons = (registryUrl: string) =>
  Effect.map(
    call(registryUrl, "GET", `/v1/neurons?organization_npi=${CLINIC.npi}`),
    (a) => a.body.neurons as ReadonlyArray<{ registration_id: string }>
  )

describe("Neuron deregistration on purpose", () => {
  it.scopedLive(
    "deregister leaves the registry, the heartbeat idles (no re-registration, also after a restart), and register brings it back with its providers",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const overrides = {
          heartbeatInterval: "200 millis",
          backoffBase: "50 millis",
          backoffCeiling: "200 millis"
        } as const
        const dataDir = yield* Sqlite.makeTempDir("neuron-")
        const scope = yield* childScope
        const first = yield* startNeuron({ registryUrls: [registry.url], dataDir, overrides }).pipe(Scope.extend(scope))
        yield* waitUntil("registered", Effect.map(first.neuron.registration, (r) => r.state === "registered"))
        yield* first.neuron.addProvider({ provider_npi: npiOf(41), provider_name: "Dr. Mira Chen" })
        const registrationId = (yield* first.neuron.registration).registration_id

        yield* first.neuron.deregister
        assert.strictEqual((yield* first.neuron.registration).state, "deregistered")
        assert.deepStrictEqual(yield* liveNeurons(registry.url), [])
        const gone = yield* call(registry.url, "GET", `/v1/registry/${CLINIC.npi}`)
        assert.strictEqual(gone.status, 404)

        // Several heartbeat intervals later: still deregistered, nothing registered again, health degraded.
        yield* Effect.sleep("1 second")
        assert.strictEqual((yield* first.neuron.registration).state, "deregistered")
        assert.deepStrictEqual(yield* liveNeurons(registry.url), [])
        const health = yield* call(first.url, "GET", "/health")
        assert.deepStrictEqual([health.body.status, health.body.registration], ["degraded", "deregistered"])
        yield* Scope.close(scope, Exit.void)

        // A restart on the same folder keeps the operator's decision.
        const second = yield* startNeuron({ registryUrls: [registry.url], dataDir, overrides })
        yield* Effect.sleep("1 second")
        assert.strictEqual((yield* second.neuron.registration).state, "deregistered")
        assert.deepStrictEqual(yield* liveNeurons(registry.url), [])

        // `register` brings it back, with its provider, and the heartbeat resumes.
        yield* second.neuron.register
        yield* waitUntil(
          "healthy again",
          Effect.map(call(second.url, "GET", "/health"), (a) => a.body.status === "healthy")
        )
        const live = yield* liveNeurons(registry.url)
        assert.strictEqual(live.length, 1)
        assert.notStrictEqual(live[0].registration_id, registrationId)
        const found = yield* call(registry.url, "GET", `/v1/registry/${npiOf(41)}`)
        assert.deepInclude(found.body, { npi: npiOf(41), organization_npi: CLINIC.npi })

        const records = yield* readRecords(second.dataDir)
        assert.includeMembers([...records.events], [
          "Deregistering",
          "Deregistered",
          "RegistrationStarted",
          "Registered"
        ])
        assert.isTrue(records.verification.ok)
        assert.strictEqual((yield* readHealthFile(second.dataDir)).registration, "registered")
      })
  )
})
