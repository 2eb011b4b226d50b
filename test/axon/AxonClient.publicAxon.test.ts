/**
 * Compatibility with the public CareAgent Axon registry (careagent/axon), through a stand-in that answers the
 * way that server does (test/support/publicAxon.ts): looser success bodies, `{"error":"text"}` errors, no
 * listing or deregistration routes, `400` "already registered" for duplicates, `401` for unknown tokens.
 */
import { assert, describe, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { isConflict, isRegistrationLost } from "../../src/axon/AxonError.js"
import { PUBLIC_AXON_PROVIDER_TYPES, startPublicAxon } from "../support/publicAxon.js"
import { makeClient, neuron, PROVIDER } from "./support.js"

describe("AxonClient against the public CareAgent Axon", () => {
  it.scoped("registers from its looser answer: interval and TTL filled in, heartbeat time from the local clock", () =>
    Effect.gen(function*() {
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([axon.url])
      const reg = yield* client.registerNeuron({ ...neuron, heartbeat_interval_s: 30 })
      assert.strictEqual(reg.heartbeat_interval_s, 30)
      assert.strictEqual(reg.ttl_s, 300)
      assert.isFalse(reg.reregistered)
      assert.strictEqual(reg.axonUrl, axon.url)
      assert.isAbove(Redacted.value(reg.bearer_token).length, 20)
      // No last_heartbeat_at in its answer: the client's clock (the TestClock's epoch here) stands in.
      const beat = yield* client.updateEndpoint(reg, "https://neuron.example.org/v2")
      assert.isTrue(DateTime.Equivalence(beat.last_heartbeat_at, DateTime.unsafeMake(0)))
    }))

  it.scoped("400 already registered on register is a conflict; on provider add it is a success", () =>
    Effect.gen(function*() {
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([axon.url])
      const reg = yield* client.registerNeuron(neuron)

      const again = yield* Effect.flip(client.registerNeuron(neuron))
      assert.strictEqual(again.reason, "conflict")
      assert.strictEqual(again.status, 400)
      assert.isTrue(isConflict(again))
      assert.include(again.message, "already registered")

      // provider_name and provider_types are sent: the stand-in refuses a provider without them.
      const provider = { provider_npi: PROVIDER, provider_name: "Dr. Example", provider_types: ["physician"] }
      const first = yield* client.registerProvider(reg, provider)
      assert.deepStrictEqual(first, { provider_id: PROVIDER, alreadyRegistered: false })
      const second = yield* client.registerProvider(reg, provider)
      assert.deepStrictEqual(second, { provider_id: null, alreadyRegistered: true })
    }))

  it.scoped("reports its refusal of a provider type outside its taxonomy, with its message", () =>
    Effect.gen(function*() {
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([axon.url])
      const reg = yield* client.registerNeuron(neuron)
      const refused = yield* Effect.flip(
        client.registerProvider(reg, { provider_npi: PROVIDER, provider_name: "Dr. X", provider_types: ["wizard"] })
      )
      assert.strictEqual(refused.reason, "rejected")
      assert.strictEqual(refused.status, 400)
      assert.include(refused.message, `"wizard" is not in the taxonomy`)
      assert.isFalse(isRegistrationLost(refused))
      assert.isTrue(PUBLIC_AXON_PROVIDER_TYPES.includes("physician"))
      const noTypes = yield* Effect.flip(client.registerProvider(reg, { provider_npi: PROVIDER }))
      assert.strictEqual(noTypes.reason, "rejected")
    }))

  it.scoped("the listing and deregistration it lacks are not_supported, never registration lost", () =>
    Effect.gen(function*() {
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([axon.url])
      const reg = yield* client.registerNeuron(neuron)
      const list = yield* Effect.flip(client.listProviders(reg))
      assert.strictEqual(list.reason, "not_supported")
      assert.strictEqual(list.status, 404)
      assert.include(list.message, "Not found")
      assert.isFalse(isRegistrationLost(list))
      const gone = yield* Effect.flip(client.deregister(reg))
      assert.strictEqual(gone.reason, "not_supported")
      // The provider remove is a 204 no-op there.
      yield* client.removeProvider(reg, PROVIDER)
    }))

  it.scoped("401 for a wrong or forgotten token: registration lost, and registering again is then a conflict", () =>
    Effect.gen(function*() {
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([axon.url])
      const reg = yield* client.registerNeuron(neuron)
      const wrong = yield* Effect.flip(
        client.updateEndpoint({ ...reg, bearer_token: Redacted.make("not-the-token") }, neuron.neuron_endpoint_url)
      )
      assert.strictEqual(wrong.reason, "unauthorized")
      assert.strictEqual(wrong.status, 401)
      assert.isTrue(isRegistrationLost(wrong))

      yield* axon.forgetTokens
      const lost = yield* Effect.flip(client.registerProvider(reg, { provider_npi: PROVIDER }))
      assert.isTrue(isRegistrationLost(lost))
      const reRegister = yield* Effect.flip(client.registerNeuron(neuron))
      assert.strictEqual(reRegister.reason, "conflict")
      const paths = (yield* axon.requests).map((r) => `${r.method} ${r.path} ${r.status}`)
      assert.deepStrictEqual(paths.slice(0, 2), [
        "POST /v1/neurons 201",
        `PUT /v1/neurons/${reg.registration_id}/endpoint 401`
      ])
    }))
})
