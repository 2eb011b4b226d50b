/**
 * Faults between the Neuron and the registry (issue 10), with several registry URLs and with the answers that do
 * mean the registration is gone. Two fault-injecting proxies in front of one real registry stand for two addresses
 * of it: a fault on the current one fails the call over to the next at once (the beat succeeds, nothing is lost),
 * and back again when the fault moves. An answer that is not JSON is still an answer: no failover. Only `401` and
 * `404` make the registration `lost`, and the Neuron registers again when the registry answers properly.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { Fault, FaultProxy } from "../support/FaultProxy.js"
import { readRecords, waitFor, waitUntil } from "../support/neuron.js"
import {
  assertNothingUnexpected,
  finish,
  healthFile,
  heartbeatFailures,
  startHealthyRig,
  stopCleanly,
  waitForHealth,
  waitHealthy
} from "./faultFixture.js"

const retryable: ReadonlyArray<readonly [title: string, fault: Fault]> = [
  ["dropped connections", { _tag: "drop" }],
  ["a reset in the middle of the response", { _tag: "reset" }],
  ["5xx", { _tag: "status", status: 503, body: JSON.stringify({ error: { code: "UNAVAILABLE", message: "down" } }) }],
  ["a registry that accepts the connection and never answers", { _tag: "blackhole" }]
]

/** Heartbeats (`PUT .../endpoint`) a proxy has passed on or answered. */
const beats = (proxy: FaultProxy) => proxy.requests().filter((r) => r.startsWith("PUT ")).length

describe("Faults between the Neuron and the registry: failover to the next URL, and lost only on 401/404", () => {
  for (const [title, fault] of retryable) {
    it.scopedLive(
      `${title} on the current registry URL: failover to the next URL within the same beat (healthy, no failure counted, the registration kept), and back when the fault moves to the other; no error logged; a clean stop`,
      () =>
        Effect.gen(function*() {
          const { id, rig } = yield* startHealthyRig({ count: 2 })
          const [a, b] = rig.proxies as [FaultProxy, FaultProxy]
          const from = rig.lines().length

          const faultOnA = new Date().toISOString()
          yield* a.set(fault)
          yield* waitUntil("a beat through the second URL", Effect.sync(() => beats(b) > 0))
          const afterFailover = yield* waitHealthy(rig, faultOnA)
          assert.strictEqual(afterFailover.consecutive_failures, 0)

          // The fault moves: the first URL is fine again, the second is not. The Neuron follows.
          const beatsOnA = beats(a)
          const faultOnB = new Date().toISOString()
          yield* a.set({ _tag: "none" })
          yield* b.set(fault)
          yield* waitUntil("a beat through the first URL again", Effect.sync(() => beats(a) > beatsOnA))
          yield* waitHealthy(rig, faultOnB)

          assert.deepStrictEqual(heartbeatFailures(rig, from), [], "a failover within the call is not a failed beat")
          assert.isTrue(rig.lines().some((l) => l.includes("Axon registry failover")))
          yield* finish(rig, id)
        })
    )
  }

  it.scopedLive(
    "a non-JSON body on a 200 from the current URL is an answer: no failover to the next URL, degraded under backoff, the registration kept, healthy again when it ends",
    () =>
      Effect.gen(function*() {
        const { id, rig } = yield* startHealthyRig({ count: 2 })
        const [a, b] = rig.proxies as [FaultProxy, FaultProxy]
        const from = rig.lines().length
        yield* a.set({ _tag: "status", status: 200, body: "<html>it works</html>", contentType: "text/html" })
        yield* waitForHealth(rig, "two failed rounds", (h) => h.consecutive_failures >= 2)
        assert.strictEqual(beats(b), 0, "no failover on an answer")
        assert.deepStrictEqual([...new Set(heartbeatFailures(rig, from))], ["undecodable"])
        const ended = new Date().toISOString()
        yield* a.set({ _tag: "none" })
        yield* waitHealthy(rig, ended)
        yield* finish(rig, id)
      })
  )

  for (
    const [status, code] of [[401, "UNAUTHORIZED"], [404, "NOT_REGISTERED"]] as const
  ) {
    it.scopedLive(
      `${status} from the registry: the registration is lost (recorded once), the Neuron registers again when the registry answers properly (same id under enrollment, a new token), healthy; no error logged`,
      () =>
        Effect.gen(function*() {
          const enrollment = "enroll-7e2b4c9d1a3f5068"
          const { id, rig } = yield* startHealthyRig({
            enrollmentToken: enrollment,
            overrides: { enrollmentToken: Option.some(Redacted.make(enrollment)) }
          })
          const firstToken = (yield* readRecords(rig.neuron.dataDir)).bearerToken

          yield* rig.proxies[0]!.set({
            _tag: "status",
            status,
            body: JSON.stringify({ error: { code, message: "this registry does not know the token" } })
          })
          yield* waitFor(
            "the loss recorded",
            Effect.map(
              readRecords(rig.neuron.dataDir),
              (r) => (r.events.includes("RegistrationLost") ? Option.some(r) : Option.none())
            )
          )
          const ended = new Date().toISOString()
          yield* rig.proxies[0]!.set({ _tag: "none" })
          const healthy = yield* waitHealthy(rig, ended)
          assert.strictEqual(healthy.registration, "registered")

          const records = yield* readRecords(rig.neuron.dataDir)
          assert.strictEqual(records.events.filter((e) => e === "RegistrationLost").length, 1)
          assert.deepStrictEqual(records.events.slice(records.events.indexOf("RegistrationLost")), [
            "RegistrationLost",
            "RegistrationStarted",
            "Registered"
          ])
          assert.strictEqual(records.registration.registration_id, id)
          assert.notStrictEqual(records.bearerToken, firstToken)
          assert.isTrue(records.verification.ok)
          assert.strictEqual((yield* healthFile(rig)).status, "healthy")
          assertNothingUnexpected(rig)
          yield* stopCleanly(rig)
        })
    )
  }
})
