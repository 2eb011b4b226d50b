/**
 * The resume loop on simulated time (`TestClock`, the in-memory registry): a provider operation left in flight
 * while the registry answers heartbeats (a provider call that timed out, a removal the registry failed) is sent
 * right after the next successful heartbeat, not at the anti-entropy round 5 minutes later; a provider the
 * registry refused is an answer, not something in flight, so it is not re-sent at every beat.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { npiOf } from "../support/neuron.js"
import { type Engine, quiet, registered, runNextAttempt, settle, startEngine } from "./engine.js"

const INTERVAL = 60_000

/** Waits until the stored provider has `status` (the resume runs in its own fiber, right after the beat). */
const providerIs = (engine: Engine, n: number, status: string) =>
  settle(
    `provider ${npiOf(n)} ${status}`,
    Effect.map(engine.store.getProvider(npiOf(n)), Option.filter((p) => p.status === status))
  )

describe("resume: provider operations in flight are sent after the next successful heartbeat (TestClock, in-memory registry)", () => {
  it.scoped(
    "a provider add that timed out and a removal the registry failed, while heartbeats succeed: both sent right after the next heartbeat, with no anti-entropy round",
    () =>
      Effect.gen(function*() {
        const engine = yield* startEngine()
        yield* registered(engine)
        yield* engine.registration.addProvider({ provider_npi: npiOf(91) })
        yield* providerIs(engine, 91, "registered")

        // The registry times out on one provider add and fails one removal; the heartbeat is unaffected.
        yield* engine.memory.failNext("timeout", { operation: "provider_add" })
        const added = yield* engine.registration.addProvider({ provider_npi: npiOf(92) })
        assert.strictEqual(added.status, "pending")
        yield* engine.memory.failNext("server_error", { operation: "provider_remove" })
        assert.strictEqual(yield* engine.registration.removeProvider(npiOf(91)), "removing")

        // The next heartbeat, one interval later, succeeds: both operations follow at that same instant.
        yield* runNextAttempt(engine)
        const beat = engine.calls("heartbeat").at(-1)!
        assert.isTrue(beat.ok)
        assert.strictEqual(beat.at, INTERVAL)
        yield* providerIs(engine, 92, "registered")
        yield* providerIs(engine, 91, "removed")
        assert.deepStrictEqual(engine.calls("provider_add").map((c) => [c.at, c.ok]), [[0, true], [0, false], [
          INTERVAL,
          true
        ]])
        assert.deepStrictEqual(engine.calls("provider_remove").map((c) => [c.at, c.ok]), [[0, false], [INTERVAL, true]])
        // Not anti-entropy: the registry's list was never read.
        assert.deepStrictEqual(engine.calls("provider_list"), [])
        const neurons = yield* engine.memory.neurons
        assert.deepStrictEqual(neurons[0]!.providers, [npiOf(92)])

        // Nothing in flight any more: the beats that follow send nothing.
        yield* runNextAttempt(engine)
        yield* runNextAttempt(engine)
        assert.strictEqual(engine.calls("provider_add").length, 3)
        assert.strictEqual(engine.calls("provider_remove").length, 2)
      }).pipe(Effect.provide(quiet))
  )

  it.scoped(
    "a provider the registry refused keeps its error and is not re-sent at every heartbeat (no retry storm); the operator's corrected details go at once",
    () =>
      Effect.gen(function*() {
        const engine = yield* startEngine()
        yield* registered(engine)
        yield* engine.memory.failNext("rejected", { operation: "provider_add" })
        const refused = yield* engine.registration.addProvider({ provider_npi: npiOf(93), provider_types: ["wizard"] })
        assert.strictEqual(refused.status, "pending")
        assert.isString(refused.last_error)
        for (let i = 0; i < 3; i++) yield* runNextAttempt(engine)
        assert.strictEqual(engine.calls("provider_add").length, 1)
        const corrected = yield* engine.registration.addProvider({
          provider_npi: npiOf(93),
          provider_types: ["physician"]
        })
        assert.deepInclude(corrected, { status: "registered", last_error: null })
        assert.strictEqual(engine.calls("provider_add").length, 2)
      }).pipe(Effect.provide(quiet))
  )
})
