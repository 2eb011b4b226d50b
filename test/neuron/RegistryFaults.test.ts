/**
 * Faults between the Neuron and the registry (issue 10), one registry URL: a real Neuron, a real registry, and the
 * fault-injecting proxy between them. For each fault, what PROTOCOL.md section 1 says: the registry is unreachable
 * (or answers unreadably), the Neuron keeps serving, degraded, and retries under the capped backoff; the
 * registration is never lost (`lost` is for 401/404 only); nothing is logged as an error; the heartbeat recovers
 * by itself when the fault ends; and the Neuron still stops cleanly.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { Fault } from "../support/FaultProxy.js"
import { call } from "../support/neuron.js"
import {
  assertNothingUnexpected,
  FAST,
  finish,
  healthFile,
  heartbeatFailures,
  startHealthyRig,
  stopCleanly,
  waitForHealth,
  waitHealthy
} from "./faultFixture.js"

const ceilingMs = Duration.toMillis(FAST.backoffCeiling)

/** Each fault, and the `AxonError` reason the heartbeat reports for it. */
const faults: ReadonlyArray<readonly [title: string, fault: Fault, reason: string]> = [
  ["dropped connections (closed without an answer)", { _tag: "drop" }, "unreachable"],
  ["a reset in the middle of the response", { _tag: "reset" }, "unreachable"],
  [
    "5xx (503 with the registry's error body)",
    {
      _tag: "status",
      status: 503,
      body: JSON.stringify({ error: { code: "UNAVAILABLE", message: "maintenance" } })
    },
    "server_error"
  ],
  [
    "a non-JSON body on a 5xx (a proxy's HTML 502 page)",
    { _tag: "status", status: 502, body: "<html><h1>502 Bad Gateway</h1></html>", contentType: "text/html" },
    "server_error"
  ],
  [
    "a non-JSON body on a 200",
    { _tag: "status", status: 200, body: "<html>it works</html>", contentType: "text/html" },
    "undecodable"
  ],
  ["a response that trickles slower than the time-out", { _tag: "trickle", everyMs: 40 }, "timeout"],
  ["added latency beyond the time-out", { _tag: "latency", ms: 1000 }, "timeout"],
  ["a registry that accepts the connection and never answers", { _tag: "blackhole" }, "timeout"]
]

describe("Faults between the Neuron and the registry (fault-injecting proxy, one registry URL)", () => {
  for (const [title, fault, reason] of faults) {
    it.scopedLive(
      `${title}: backoff (degraded, failures counted, next attempt within the ceiling), /health answers, the registration kept (not lost), no error logged, healthy again when the fault ends, and a clean stop`,
      () =>
        Effect.gen(function*() {
          const { id, rig } = yield* startHealthyRig()
          const [proxy] = rig.proxies

          const from = rig.lines().length
          yield* proxy!.set(fault)
          // Failed rounds in a row: the heartbeat goes on, under the backoff.
          const failing = yield* waitForHealth(rig, "two failed rounds", (h) => h.consecutive_failures >= 2)
          assert.strictEqual(failing.status, "degraded")
          assert.strictEqual(failing.registration, "registered")
          assert.isNotNull(failing.next_attempt_at)
          assert.isAtMost(Date.parse(failing.next_attempt_at!), Date.parse(failing.updated_at) + ceilingMs + 50)
          // The Neuron keeps serving meanwhile.
          const health = yield* call(rig.neuron.url, "GET", "/health")
          assert.strictEqual(health.status, 200)
          assert.deepInclude(health.body, { status: "degraded", registration: "registered" })
          assert.deepStrictEqual([...new Set(heartbeatFailures(rig, from))], [reason])

          const faultEnded = new Date().toISOString()
          yield* proxy!.set({ _tag: "none" })
          yield* waitHealthy(rig, faultEnded)
          yield* finish(rig, id)
        })
    )
  }

  it.scopedLive(
    "added latency under the time-out: every beat still succeeds (healthy throughout, no failure counted)",
    () =>
      Effect.gen(function*() {
        const { id, rig } = yield* startHealthyRig()
        const since = new Date().toISOString()
        const from = rig.lines().length
        yield* rig.proxies[0]!.set({ _tag: "latency", ms: 50 })
        const after = yield* waitHealthy(rig, since)
        assert.strictEqual(after.consecutive_failures, 0)
        assert.deepStrictEqual(heartbeatFailures(rig, from), [])
        yield* finish(rig, id)
      })
  )

  it.scopedLive(
    "a registry that never answers when the Neuron stops: the stop completes (the hanging call is interrupted), the health file says stopped",
    () =>
      Effect.gen(function*() {
        const { rig } = yield* startHealthyRig({ overrides: { axonTimeout: "30 seconds" } })
        yield* rig.proxies[0]!.set({ _tag: "blackhole" })
        // A beat is now waiting on a registry that will not answer within this test.
        const before = rig.proxies[0]!.connections()
        yield* waitForHealth(rig, "a beat in flight", () => rig.proxies[0]!.connections() > before)
        yield* stopCleanly(rig)
        assert.strictEqual((yield* healthFile(rig)).status, "stopped")
        assertNothingUnexpected(rig)
      })
  )
})
