import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import { AxonClient } from "../../src/axon/AxonClient.js"
import { isRegistrationLost } from "../../src/axon/AxonError.js"
import { AxonMemory } from "../../src/axon/AxonFakes.js"
import { neuron, PROVIDER } from "./support.js"

describe("AxonClient.layerTest", () => {
  it.effect("implemented methods work; the others die naming the method", () =>
    Effect.gen(function*() {
      const client = yield* AxonClient
      assert.strictEqual(yield* client.currentUrl, "http://fake")
      const exit = yield* Effect.exit(client.deregister({ registration_id: "r", bearer_token: Redacted.make("t") }))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
      if (Exit.isFailure(exit)) assert.include(Cause.pretty(exit.cause), "AxonClient.deregister is not implemented")
    }).pipe(Effect.provide(AxonClient.layerTest({ currentUrl: Effect.succeed("http://fake") }))))
})

describe("AxonClient.layerMemory", () => {
  it.effect("registers, beats, adds providers idempotently, lists, removes, deregisters", () =>
    Effect.gen(function*() {
      const client = yield* AxonClient
      const memory = yield* AxonMemory
      const reg = yield* client.registerNeuron({ ...neuron, heartbeat_interval_s: 10 })
      assert.deepStrictEqual([reg.heartbeat_interval_s, reg.ttl_s, reg.reregistered], [10, 30, false])
      yield* client.updateEndpoint(reg, "https://neuron.example.org/b")
      const added = yield* client.registerProvider(reg, { provider_npi: PROVIDER })
      assert.isFalse(added.alreadyRegistered)
      assert.deepStrictEqual(yield* client.registerProvider(reg, { provider_npi: PROVIDER }), {
        provider_id: added.provider_id,
        alreadyRegistered: true
      })
      assert.deepStrictEqual((yield* client.listProviders(reg)).map((p) => p.provider_npi), [PROVIDER])
      const [held] = yield* memory.neurons
      assert.deepStrictEqual(held, {
        registration_id: reg.registration_id,
        organization_npi: neuron.organization_npi,
        neuron_endpoint_url: "https://neuron.example.org/b",
        heartbeats: 1,
        providers: [PROVIDER]
      })
      yield* client.removeProvider(reg, PROVIDER)
      yield* client.deregister(reg)
      assert.lengthOf(yield* memory.neurons, 0)
      // Development mode: a second registration of the NPI while it is held is a conflict.
      yield* client.registerNeuron(neuron)
      assert.strictEqual((yield* Effect.flip(client.registerNeuron(neuron))).reason, "conflict")
    }).pipe(Effect.provide(AxonClient.layerMemory())))

  it.effect("scripts failures: unreachable mode, the next call's 401, a dropped registration, a lost token", () =>
    Effect.gen(function*() {
      const client = yield* AxonClient
      const memory = yield* AxonMemory
      yield* memory.setMode("unreachable")
      assert.strictEqual((yield* Effect.flip(client.registerNeuron(neuron))).reason, "unreachable")
      yield* memory.setMode("up")
      const reg = yield* client.registerNeuron(neuron)

      yield* memory.failNext("unauthorized", { operation: "heartbeat" })
      yield* client.registerProvider(reg, { provider_npi: PROVIDER }) // not a heartbeat: unaffected
      const scripted = yield* Effect.flip(client.updateEndpoint(reg, neuron.neuron_endpoint_url))
      assert.deepStrictEqual([scripted.reason, scripted.status, isRegistrationLost(scripted)], [
        "unauthorized",
        401,
        true
      ])
      yield* client.updateEndpoint(reg, neuron.neuron_endpoint_url) // only once

      yield* memory.dropRegistration(reg.registration_id)
      const dropped = yield* Effect.flip(client.updateEndpoint(reg, neuron.neuron_endpoint_url))
      assert.deepStrictEqual([dropped.reason, dropped.status], ["not_registered", 404])

      const again = yield* client.registerNeuron(neuron)
      yield* memory.forgetToken()
      const forgotten = yield* Effect.flip(client.updateEndpoint(again, neuron.neuron_endpoint_url))
      assert.strictEqual(forgotten.reason, "unauthorized")

      const calls = (yield* memory.calls).map((c) => `${c.operation}:${c.outcome}`)
      assert.deepStrictEqual(calls, [
        "register:unreachable",
        "register:ok",
        "provider_add:ok",
        "heartbeat:unauthorized",
        "heartbeat:ok",
        "heartbeat:not_registered",
        "register:ok",
        "heartbeat:unauthorized"
      ])
    }).pipe(Effect.provide(AxonClient.layerMemory())))

  it.effect("public-Axon mode: listing not_supported; enrollment mode: re-registration renews the token", () =>
    Effect.gen(function*() {
      const client = yield* AxonClient
      const first = yield* client.registerNeuron(neuron)
      const second = yield* client.registerNeuron(neuron)
      assert.isTrue(second.reregistered)
      assert.strictEqual(second.registration_id, first.registration_id)
      assert.strictEqual((yield* Effect.flip(client.updateEndpoint(first, "https://n.example"))).reason, "unauthorized")
      assert.strictEqual((yield* Effect.flip(client.listProviders(second))).reason, "not_supported")
    }).pipe(Effect.provide(AxonClient.layerMemory({ listing: false, enrollment: true }))))
})
