/**
 * The heartbeat monitor: a scoped background fiber that sweeps the registrations every half of the shortest
 * registered heartbeat interval (30 s when none is registered), so a neuron is seen `down` within 2.5 of its
 * intervals. A sweep is `RegistryStore.sweep` (SQLite: an in-memory scan plus one batched write; PostgreSQL: the
 * sweeper's lease, then one set-based statement, by whichever instance holds the lease); each round's failure
 * is logged and the loop goes on. The first sweep comes at the first period boundary after start and judges by
 * the stored heartbeat times, so a restart resets no one's clock.
 */
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { describeCause } from "../log/Causes.js"
import { RegistryStore } from "./RegistryStore.js"

/** The sweep period when no neuron is registered. */
export const IDLE_SWEEP_MS = 30_000

/** The sweep loop and what it last did. */
export class HeartbeatMonitor extends Effect.Service<HeartbeatMonitor>()("neuron/registry/HeartbeatMonitor", {
  scoped: Effect.gen(function*() {
    const store = yield* RegistryStore
    const lastSweep = yield* SubscriptionRef.make(Option.none<number>())

    const periodMs = store.shortestIntervalS.pipe(
      Effect.map((shortest) => shortest === undefined ? IDLE_SWEEP_MS : (shortest * 1000) / 2),
      // The database out of reach: keep the rhythm of an idle registry until it is back.
      Effect.orElseSucceed(() => IDLE_SWEEP_MS)
    )

    const sweepOnce = (period: number) =>
      store.sweep(period).pipe(
        Effect.tap(({ nowMs, swept, transitions }) =>
          swept
            ? Effect.zipRight(
              SubscriptionRef.set(lastSweep, Option.some(nowMs)),
              transitions > 0 ? Effect.logInfo("sweep").pipe(Effect.annotateLogs({ transitions })) : Effect.void
            )
            : Effect.void
        ),
        Effect.map(({ nowMs }) => nowMs),
        Effect.catchAllCause((cause) =>
          Effect.logError("sweep failed; the next one retries").pipe(
            Effect.annotateLogs("reason", describeCause(cause)),
            Effect.zipRight(Clock.currentTimeMillis)
          )
        )
      )

    // Sweeps fall on multiples of the period (every :00 and :30 with the default interval): a late or slow
    // round never shifts the ones after it, and a missed round is not made up twice.
    const loop = Effect.gen(function*() {
      let last = yield* Clock.currentTimeMillis
      while (true) {
        const period = yield* periodMs
        const dueAt = (Math.floor(last / period) + 1) * period
        const now = yield* Clock.currentTimeMillis
        if (now < dueAt) {
          // A registration with a shorter interval brings the next sweep forward: re-plan when woken.
          const wait = store.replanEveryMs === undefined ? dueAt - now : Math.min(dueAt - now, store.replanEveryMs)
          const woken = yield* Effect.raceFirst(
            Effect.as(Effect.sleep(wait), wait < dueAt - now),
            Effect.as(store.intervalChanged, true)
          )
          if (woken) continue
        }
        // The next round is planned from the time this one judged by: a sweep that waited on the database past
        // the next boundary is followed by one more at once, never by a skipped boundary.
        last = yield* sweepOnce(period)
      }
    })

    yield* loop.pipe(Effect.annotateLogs({ service: "HeartbeatMonitor" }), Effect.forkScoped)

    return {
      /** When the last sweep ran, if one has (on PostgreSQL: whichever instance ran it). */
      lastSweepAt: Effect.map(
        store.sharedLastSweepAt ?? SubscriptionRef.get(lastSweep),
        Option.map((ms) => DateTime.unsafeMake(ms))
      ),
      /**
       * Waits until a sweep that this instance ran at `atMs` or later has finished (alerts written). For tests and
       * tools.
       */
      awaitSweep: (atMs: number) =>
        lastSweep.changes.pipe(
          Stream.filter((ms) => Option.isSome(ms) && ms.value >= atMs),
          Stream.take(1),
          Stream.runDrain
        )
    } as const
  }),
  accessors: false
}) {}
