/**
 * The client against this project's real Axon registry (its Layer, a real SQLite file, a real HTTP server on
 * port 0): every route of PROTOCOL.md section 1 that the Neuron calls, with the contract's strict answers.
 */
import { assert, describe, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { isConflict, isRegistrationLost } from "../../src/axon/AxonError.js"
import type { Npi } from "../../src/domain/Npi.js"
import { startRegistry } from "../support/registry.js"
import { closedPortUrl, makeClient, neuron, PROVIDER } from "./support.js"

const OTHER_ORG = "1558598797" as Npi

describe("AxonClient against the project's registry", () => {
  it.scoped("register (201), heartbeat ok, then conflict (409) on a second registration in dev mode", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry()
      const client = yield* makeClient([registry.url])
      const reg = yield* client.registerNeuron({ ...neuron, heartbeat_interval_s: 20 })
      assert.isFalse(reg.reregistered)
      assert.strictEqual(reg.heartbeat_interval_s, 20)
      assert.isAbove(reg.ttl_s, 0)
      assert.strictEqual(reg.axonUrl, registry.url)
      const beat = yield* client.updateEndpoint(reg, "https://neuron.example.org/moved")
      assert.isTrue(DateTime.isDateTime(beat.last_heartbeat_at))

      const conflict = yield* Effect.flip(client.registerNeuron(neuron))
      assert.deepStrictEqual([conflict.reason, conflict.status, isConflict(conflict)], ["conflict", 409, true])
      assert.include(conflict.message, "ALREADY_REGISTERED")
    }))

  it.scoped("re-register with the enrollment token (200, same id, new token); the old token then gets 401", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry({ enrollmentToken: "enroll-0123456789" })
      const anonymous = yield* makeClient([registry.url])
      const refused = yield* Effect.flip(anonymous.registerNeuron(neuron))
      assert.deepStrictEqual([refused.reason, refused.status], ["unauthorized", 401])
      assert.isFalse(isRegistrationLost(refused))

      const client = yield* makeClient([registry.url], { enrollmentToken: "enroll-0123456789" })
      const first = yield* client.registerNeuron(neuron)
      const second = yield* client.registerNeuron(neuron)
      assert.isFalse(first.reregistered)
      assert.isTrue(second.reregistered)
      assert.strictEqual(second.registration_id, first.registration_id)
      assert.notStrictEqual(Redacted.value(second.bearer_token), Redacted.value(first.bearer_token))
      yield* client.updateEndpoint(second, neuron.neuron_endpoint_url)
      const stale = yield* Effect.flip(client.updateEndpoint(first, neuron.neuron_endpoint_url))
      assert.deepStrictEqual([stale.reason, stale.status, isRegistrationLost(stale)], ["unauthorized", 401, true])
    }))

  it.scoped("heartbeat 401 with a wrong token, 403 with another neuron's token", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry()
      const client = yield* makeClient([registry.url])
      const a = yield* client.registerNeuron(neuron)
      const b = yield* client.registerNeuron({ ...neuron, organization_npi: OTHER_ORG })
      const wrong = yield* Effect.flip(
        client.updateEndpoint({ ...a, bearer_token: Redacted.make("wrong-token") }, neuron.neuron_endpoint_url)
      )
      assert.deepStrictEqual([wrong.reason, wrong.status, isRegistrationLost(wrong)], ["unauthorized", 401, true])
      const crossed = yield* Effect.flip(
        client.updateEndpoint({ ...a, bearer_token: b.bearer_token }, neuron.neuron_endpoint_url)
      )
      assert.deepStrictEqual([crossed.reason, crossed.status], ["rejected", 403])
    }))

  it.scoped("providers: add (201) then again (200, idempotent), list, remove (twice), list empty", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry()
      const client = yield* makeClient([registry.url])
      const reg = yield* client.registerNeuron(neuron)
      const provider = { provider_npi: PROVIDER, provider_name: "Dr. Example", provider_types: ["physician"] }
      const added = yield* client.registerProvider(reg, provider)
      assert.isFalse(added.alreadyRegistered)
      assert.isString(added.provider_id)
      const again = yield* client.registerProvider(reg, provider)
      assert.deepStrictEqual(again, { provider_id: added.provider_id, alreadyRegistered: true })

      const listed = yield* client.listProviders(reg)
      assert.deepStrictEqual(listed.map((p) => [p.provider_npi, p.provider_id, p.provider_name]), [
        [PROVIDER, added.provider_id, "Dr. Example"]
      ])
      yield* client.removeProvider(reg, PROVIDER)
      yield* client.removeProvider(reg, PROVIDER)
      assert.lengthOf(yield* client.listProviders(reg), 0)
    }))

  it.scoped("deregister (204); afterwards heartbeat and provider add are 404 not_registered, the listing not_supported", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry()
      const client = yield* makeClient([registry.url])
      const reg = yield* client.registerNeuron(neuron)
      yield* client.deregister(reg)
      const beat = yield* Effect.flip(client.updateEndpoint(reg, neuron.neuron_endpoint_url))
      assert.deepStrictEqual([beat.reason, beat.status, isRegistrationLost(beat)], ["not_registered", 404, true])
      const add = yield* Effect.flip(client.registerProvider(reg, { provider_npi: PROVIDER }))
      assert.isTrue(isRegistrationLost(add))
      const list = yield* Effect.flip(client.listProviders(reg))
      assert.strictEqual(list.reason, "not_supported")
      const twice = yield* Effect.flip(client.deregister(reg))
      assert.strictEqual(twice.reason, "not_registered")
    }))

  it.scoped("a request the contract refuses is rejected with the registry's message naming the field", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry()
      const client = yield* makeClient([registry.url])
      const reg = yield* client.registerNeuron(neuron)
      // Refused locally, before sending: the same schemas encode the request.
      const local = yield* Effect.flip(client.updateEndpoint(reg, "ftp://nope"))
      assert.strictEqual(local.reason, "rejected")
      assert.isUndefined(local.status)
      assert.include(local.message, "neuron_endpoint_url")
      // Refused by the registry: a malformed registration id in the path.
      const remote = yield* Effect.flip(
        client.updateEndpoint({ ...reg, registration_id: "no such id" }, "https://x.org")
      )
      assert.deepStrictEqual([remote.reason, remote.status], ["rejected", 400])
      assert.include(remote.message, "INVALID_REQUEST: registration_id:")
      assert.isFalse(isRegistrationLost(remote))
    }))

  it.scoped("failover: first URL a closed port, second the real registry: succeeds, and later calls stay there", () =>
    Effect.gen(function*() {
      const closed = yield* closedPortUrl
      const registry = yield* startRegistry()
      const client = yield* makeClient([closed, registry.url])
      const reg = yield* client.registerNeuron(neuron)
      assert.strictEqual(reg.axonUrl, registry.url)
      assert.strictEqual(yield* client.currentUrl, registry.url)
      yield* client.updateEndpoint(reg, neuron.neuron_endpoint_url)
      yield* client.registerProvider(reg, { provider_npi: PROVIDER })
      assert.strictEqual(yield* client.currentUrl, registry.url)
    }))
})
