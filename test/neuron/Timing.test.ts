/**
 * The heartbeat's timing over hours of simulated time (`TestClock`), on the in-memory registry that a test can take
 * away and bring back: every delay at or under the ceiling, `next_attempt_at` telling the truth, recovery, and a
 * conflict that does not turn into a retry storm. The health file and the event log / audit chain after each.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { npiOf, readHealthFile } from "../support/neuron.js"
import { type Engine, identity, quiet, registered, runNextAttempt, settle, startEngine } from "./engine.js"

const HOUR = 3_600_000
const CEILING = 240_000
const INTERVAL = 60_000

/** Event types in order, and the audit chain's verdict. */
const records = (engine: Engine) =>
  Effect.gen(function*() {
    const events = (yield* engine.store.events()).map((e) => e.type)
    return { events, verification: yield* engine.audit.verify() }
  })

/** Runs failing attempts until `until` (clock ms); returns every attempt's plan. */
const outage = (engine: Engine, until: number) =>
  Effect.gen(function*() {
    const plans: Array<{ announced: number; wake: number; from: number }> = []
    while ((yield* Clock.currentTimeMillis) < until) {
      const from = yield* Clock.currentTimeMillis
      plans.push({ ...(yield* runNextAttempt(engine)), from })
    }
    return plans
  })

// Hundreds of "heartbeat failed" lines (`quiet`): not what these tests are about.

describe("Heartbeat timing (TestClock, in-memory registry; the health file, event log and audit chain after each)", () => {
  it.scoped(
    "registry down for a long time: every delay at or under the cap (NEURON_BACKOFF_CEILING_MS), each attempt at the announced next_attempt_at, and the health file says so",
    () =>
      Effect.gen(function*() {
        const engine = yield* startEngine()
        yield* registered(engine)
        yield* engine.memory.setMode("unreachable")
        const plans = yield* outage(engine, 4 * HOUR)

        const failures = engine.calls("heartbeat").filter((c) => !c.ok)
        assert.strictEqual(failures.length, plans.length)
        // The first failure comes one steady interval after the last success.
        assert.strictEqual(failures[0]!.at, INTERVAL)
        const gaps = failures.slice(1).map((c, i) => c.at - failures[i]!.at)
        for (const gap of gaps) assert.isAtMost(gap, CEILING)
        // Each attempt came when the health snapshot said it would (to the millisecond the file can show).
        for (const [i, plan] of plans.entries()) {
          assert.strictEqual(failures[i]!.at, plan.wake)
          assert.isAtMost(plan.wake - plan.announced, 1)
          assert.isAtMost(plan.wake - plan.from, CEILING)
        }
        // Full jitter under a growing cap: the delays vary, and over hours some come near the cap.
        assert.isAbove(new Set(gaps).size, gaps.length / 2)
        assert.isAbove(Math.max(...gaps), CEILING / 2)
        // Hours at no more than one attempt per ceiling... and no fewer: the Neuron kept trying.
        assert.isAtLeast(failures.length, (4 * HOUR - INTERVAL) / CEILING)

        const now = yield* Clock.currentTimeMillis
        const health = yield* engine.health.get
        assert.deepInclude(health, {
          status: "degraded",
          registration: "registered",
          consecutive_failures: failures.length,
          last_heartbeat_at: "1970-01-01T00:00:00.000Z"
        })
        assert.isAtMost(Date.parse(health.next_attempt_at!) - now, CEILING)
        assert.deepStrictEqual(yield* readHealthFile(engine.dataDir), health)
        // An outage is no lifecycle change: the log holds the registration only, and the chain verifies.
        const { events, verification } = yield* records(engine)
        assert.deepStrictEqual(events, ["RegistrationStarted", "Registered"])
        assert.isTrue(verification.ok)
      }).pipe(Effect.provide(quiet))
  )

  const recoveries = [
    [
      INTERVAL,
      "recovery within one steady interval of the registry returning (ceiling at most the 60 s interval): the next attempt succeeds; then beats at the steady interval; an anti-entropy round registers the provider added meanwhile"
    ],
    [
      CEILING,
      "recovery with the default ceiling (240 s, above the 60 s interval): the first attempt after the registry returns, at most one ceiling away, succeeds; then beats at the steady interval; an anti-entropy round registers the provider added meanwhile"
    ]
  ] as const
  for (const [ceiling, name] of recoveries) {
    it.scoped(
      name,
      () =>
        Effect.gen(function*() {
          const engine = yield* startEngine({ backoffCeiling: ceiling })
          yield* registered(engine)
          yield* engine.memory.setMode("unreachable")
          yield* outage(engine, HOUR / 2)
          // A provider added during the outage waits, pending.
          const added = yield* engine.registration.addProvider({ provider_npi: npiOf(21) })
          assert.strictEqual(added.status, "pending")

          yield* engine.memory.setMode("up")
          const back = yield* Clock.currentTimeMillis
          const recovery = yield* runNextAttempt(engine)
          const beat = engine.calls("heartbeat").at(-1)!
          assert.isTrue(beat.ok)
          assert.isAtMost(recovery.wake - back, ceiling)
          if (ceiling <= INTERVAL) assert.isAtMost(recovery.wake - back, INTERVAL)
          const healthy = yield* engine.health.get
          assert.deepInclude(healthy, { status: "healthy", consecutive_failures: 0, registration: "registered" })

          // The anti-entropy round asked for by the recovery runs at once, and repairs the registry's list.
          yield* settle(
            "the anti-entropy round after the recovery",
            Effect.gen(function*() {
              const neurons = yield* engine.memory.neurons
              return neurons[0]!.providers.includes(npiOf(21)) ? Option.some(true) : Option.none()
            })
          )
          const sync = engine.calls("provider_list").filter((c) => c.at === recovery.wake)
          assert.deepStrictEqual(sync.map((c) => c.ok), [true])
          const provider = yield* engine.registration.getProvider(npiOf(21))
          assert.strictEqual(Option.getOrThrow(provider).status, "registered")

          // Back at the steady pace: every next beat exactly one interval after the last.
          for (let i = 1; i <= 3; i++) {
            const next = yield* runNextAttempt(engine)
            assert.strictEqual(next.wake, recovery.wake + i * INTERVAL)
            assert.isTrue(engine.calls("heartbeat").at(-1)!.ok)
          }
          const file = yield* readHealthFile(engine.dataDir)
          assert.deepInclude(file, { status: "healthy", registration: "registered", consecutive_failures: 0 })
          assert.strictEqual(Date.parse(file.next_attempt_at) - Date.parse(file.last_heartbeat_at), INTERVAL)
          const { events, verification } = yield* records(engine)
          assert.deepStrictEqual(events, ["RegistrationStarted", "Registered", "ProviderAdded", "ProviderRegistered"])
          assert.isTrue(verification.ok)
        }).pipe(Effect.provide(quiet))
    )
  }

  it.scoped(
    "a conflict (the NPI registered by another client, no enrollment): lifecycle conflict in the health file, no retry storm over an hour, and registration once the operator clears it",
    () =>
      Effect.gen(function*() {
        const engine = yield* startEngine({
          before: (client) =>
            client.registerNeuron({
              organization_npi: identity.organization_npi,
              organization_name: "Someone Else",
              organization_type: "practice",
              neuron_endpoint_url: "https://elsewhere.test"
            })
        })
        const conflict = yield* settle(
          "the conflict",
          Effect.map(
            engine.health.get,
            (h) => (h.registration === "conflict" && h.next_attempt_at !== null ? Option.some(h) : Option.none())
          )
        )
        assert.deepInclude(conflict, { status: "degraded", consecutive_failures: 1, last_heartbeat_at: null })
        assert.strictEqual(Date.parse(conflict.next_attempt_at!), CEILING)

        while ((yield* Clock.currentTimeMillis) < HOUR) yield* runNextAttempt(engine, "register")
        // The one registration call that made it (the other client's) is not in this log.
        const attempts = engine.calls("register")
        assert.isTrue(attempts.every((c) => !c.ok))
        // One attempt per ceiling: 1 + 3600 / 240 in the hour, evenly spaced, never faster.
        assert.strictEqual(attempts.length, 1 + HOUR / CEILING)
        attempts.slice(1).forEach((c, i) => assert.strictEqual(c.at - attempts[i]!.at, CEILING))
        assert.strictEqual(engine.calls().length, attempts.length)

        const file = yield* readHealthFile(engine.dataDir)
        assert.deepInclude(file, {
          status: "degraded",
          registration: "conflict",
          consecutive_failures: attempts.length,
          last_heartbeat_at: null
        })
        let log = yield* records(engine)
        // No event per retry: the conflict is recorded once.
        assert.deepStrictEqual(log.events, ["RegistrationStarted", "ConflictDetected"])
        assert.isTrue(log.verification.ok)
        assert.strictEqual((yield* engine.registration.current).state, "conflict")

        // The operator clears the other registration: the next attempt registers.
        yield* engine.memory.dropRegistration()
        yield* runNextAttempt(engine, "register")
        yield* settle(
          "healthy again",
          Effect.map(engine.health.get, (h) => (h.status === "healthy" ? Option.some(h) : Option.none()))
        )
        assert.deepInclude(yield* readHealthFile(engine.dataDir), { status: "healthy", registration: "registered" })
        log = yield* records(engine)
        assert.deepStrictEqual(log.events, [
          "RegistrationStarted",
          "ConflictDetected",
          "RegistrationStarted",
          "Registered"
        ])
        assert.isTrue(log.verification.ok)
      }).pipe(Effect.provide(quiet))
  )

  it.scoped(
    "a round that dies on an unexpected error is logged and retried under backoff: neither the heartbeat loop nor anti-entropy stops",
    () =>
      Effect.gen(function*() {
        const engine = yield* startEngine({ dieOnce: ["heartbeat", "provider_list"] })
        // The first beat registers, then its heartbeat call dies.
        const failed = yield* settle(
          "the failed round to be counted",
          Effect.map(
            engine.health.get,
            (h) => (h.consecutive_failures === 1 && h.next_attempt_at !== null ? Option.some(h) : Option.none())
          )
        )
        assert.deepInclude(failed, { status: "degraded", registration: "registered" })
        assert.isAtMost(Date.parse(failed.next_attempt_at!), 5_000)
        // The loop is alive: the next attempt succeeds.
        yield* runNextAttempt(engine)
        assert.isTrue(engine.calls("heartbeat").at(-1)!.ok)
        assert.deepInclude(yield* engine.health.get, { status: "healthy", consecutive_failures: 0 })
        yield* runNextAttempt(engine)
        assert.strictEqual(engine.calls("heartbeat").filter((c) => c.ok).length, 2)
        // Anti-entropy: the recovery asked for a round, which died; the next round runs and works.
        assert.deepStrictEqual(engine.calls("provider_list").map((c) => c.ok), [false])
        yield* engine.registration.requestSync
        yield* settle(
          "a second anti-entropy round",
          Effect.sync(() => (engine.calls("provider_list").length === 2 ? Option.some(true) : Option.none()))
        )
        assert.deepStrictEqual(engine.calls("provider_list").map((c) => c.ok), [false, true])
      }).pipe(Effect.provide(quiet))
  )
})
