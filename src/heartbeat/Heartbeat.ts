/**
 * The heartbeat: a background loop that keeps the registration alive. It beats at the steady interval while the
 * registry answers, backs off (capped, full jitter) while it does not, re-registers when the registry has lost the
 * registration, and waits for the operator, at the ceiling's pace, when the registry reports a conflict. Each change
 * of status reaches `NeuronHealth` (and so the health file and `/health`).
 * A second loop, anti-entropy, repairs the registry's provider list every 5 minutes (jittered) and after every
 * recovery. A third, resume, sends the provider operations left in flight (a crash in the middle of a call, a
 * registry that was away) after any successful heartbeat while there are some: within moments of a restart or a
 * recovery, without waiting for anti-entropy.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import { type AxonError, isConflict } from "../axon/AxonError.js"
import { NeuronHealth } from "../health/NeuronHealth.js"
import { describeCause } from "../log/Causes.js"
import { NeuronMetrics } from "../observability/NeuronMetrics.js"
import type { SyncReport } from "../registration/ProviderSync.js"
import { RegistrationService } from "../registration/RegistrationService.js"
import { heartbeatSchedule, steady } from "./Backoff.js"

/** The heartbeat's timing. */
export interface HeartbeatOptions {
  readonly interval: Duration.DurationInput
  readonly backoffBase: Duration.DurationInput
  readonly backoffCeiling: Duration.DurationInput
  /** How often anti-entropy runs when nothing asks for it (jittered by ±20 %). Default 5 minutes. */
  readonly syncInterval?: Duration.DurationInput
}

/** The heartbeat loop, forever. Each round's failure is logged and counted, never fatal. */
export const heartbeatLoop = (options: HeartbeatOptions) =>
  Effect.gen(function*() {
    const registration = yield* RegistrationService
    const health = yield* NeuronHealth
    const metrics = yield* Effect.serviceOption(NeuronMetrics)
    const count = (outcome: string) => Option.isSome(metrics) && metrics.value.heartbeat(outcome)
    const ceiling = Duration.decode(options.backoffCeiling)
    let failing = false
    const configured = Duration.decode(options.interval)
    const makeDriver = (interval: Duration.Duration) =>
      Schedule.driver(
        heartbeatSchedule({ interval, base: options.backoffBase, ceiling }).pipe(
          Schedule.tapOutput((delay) =>
            Effect.zipRight(
              // A delay chosen after a failure is a backoff delay.
              Effect.sync(() => failing && Option.isSome(metrics) && metrics.value.backoffDelay(delay)),
              health.nextAttemptIn(delay)
            )
          )
        )
      )
    // The registry judges a neuron by the interval it accepted: beat at that pace when it is shorter.
    let interval = configured
    let driver = yield* makeDriver(interval)
    const wokenOrAfter = (wait: Effect.Effect<unknown, unknown>) =>
      Effect.raceFirst(Effect.ignore(wait), Queue.take(registration.wakeups))
    const round = Effect.gen(function*() {
      const outcome = yield* Effect.either(registration.beat)
      const current = yield* registration.current
      const state = current.state
      if (Either.isRight(outcome) && outcome.right === "idle") {
        // Deregistered by the operator: nothing to beat for until `register` is called.
        count("idle")
        yield* health.update({ status: "degraded", registration: state, next_attempt_at: null })
        failing = false
        return yield* wokenOrAfter(Effect.sleep(interval))
      }
      if (Either.isRight(outcome)) {
        count("ok")
        const accepted = current.heartbeat_interval_s === null
          ? configured
          : Duration.min(configured, Duration.seconds(current.heartbeat_interval_s))
        if (!Duration.equals(accepted, interval)) {
          interval = accepted
          driver = yield* makeDriver(interval)
          yield* Effect.logInfo("beating at the interval the registry accepted").pipe(
            Effect.annotateLogs({ interval: Duration.format(interval) })
          )
        }
        if (failing) {
          yield* Effect.logInfo("the registry answers again; the Neuron is healthy")
          yield* registration.requestSync
        }
        failing = false
        return yield* wokenOrAfter(driver.next(true))
      }
      const error = outcome.left
      failing = true
      count(isConflict(error) ? "conflict" : "failed")
      yield* health.recordFailure({ registration: state })
      if (isConflict(error)) {
        // Retrying cannot fix a conflict: wait for the operator, trying again only at the ceiling's pace.
        yield* Effect.logError("the registry refuses this organization's registration; waiting for the operator")
          .pipe(Effect.annotateLogs({ reason: error.reason, message: error.message }))
        yield* health.nextAttemptIn(ceiling)
        return yield* wokenOrAfter(Effect.sleep(ceiling))
      }
      yield* Effect.logWarning("heartbeat failed; the Neuron keeps serving, degraded").pipe(
        Effect.annotateLogs({ reason: error.reason, message: error.message, status: error.status ?? null })
      )
      yield* wokenOrAfter(driver.next(false))
    })
    // An unexpected error in a round (a database fault, a bug) must not end the loop for good while the Neuron
    // keeps serving: it counts as a failed round, is logged (its name and message only), and is retried.
    const guarded = round.pipe(
      Effect.catchAllDefect((defect) =>
        Effect.gen(function*() {
          failing = true
          count("error")
          yield* Effect.logError("heartbeat round failed unexpectedly; retrying under backoff").pipe(
            Effect.annotateLogs({ error: describeCause(Cause.die(defect)) })
          )
          yield* health.recordFailure()
          yield* wokenOrAfter(driver.next(false))
        })
      )
    )
    while (true) yield* guarded
  }).pipe(Effect.annotateLogs({ service: "Heartbeat" }))

/** Logs what a provider round changed at the registry, if anything. */
const logRepairs = (message: string) => (report: SyncReport) =>
  report.added.length + report.removed.length + report.refused.length === 0
    ? Effect.void
    : Effect.logInfo(message).pipe(
      Effect.annotateLogs({
        mode: report.mode,
        added: report.added.length,
        removed: report.removed.length,
        refused: report.refused.length
      })
    )

/** One provider round that never fails the loop running it: its failure is logged, and it runs again later. */
const guardedRound = (round: Effect.Effect<SyncReport, AxonError>, what: string) =>
  round.pipe(
    Effect.catchAll((e) =>
      Effect.logWarning(`${what} round failed; it runs again later`).pipe(
        Effect.annotateLogs({ reason: e.reason, message: e.message })
      )
    ),
    Effect.catchAllDefect((defect) =>
      Effect.logError(`${what} round failed unexpectedly; it runs again later`).pipe(
        Effect.annotateLogs({ error: describeCause(Cause.die(defect)) })
      )
    )
  )

/** Anti-entropy, forever: on request, or every `syncInterval` (jittered). */
export const antiEntropyLoop = (options: HeartbeatOptions) =>
  Effect.gen(function*() {
    const registration = yield* RegistrationService
    const driver = yield* Schedule.driver(steady(options.syncInterval ?? Duration.minutes(5), { jitter: 0.2 }))
    while (true) {
      yield* Effect.raceFirst(Effect.ignore(driver.next(undefined)), Queue.take(registration.syncRequests))
      yield* guardedRound(
        registration.syncProviders.pipe(Effect.tap(logRepairs("anti-entropy repaired the registry's provider list"))),
        "anti-entropy"
      )
    }
  }).pipe(Effect.annotateLogs({ service: "AntiEntropy" }))

/**
 * Resume, forever: each time a heartbeat succeeds while provider operations are in flight, sends them. A round
 * that fails leaves them in flight, so the next successful heartbeat asks again (at the heartbeat's pace).
 */
export const resumeLoop = Effect.gen(function*() {
  const registration = yield* RegistrationService
  while (true) {
    yield* Queue.take(registration.resumeRequests)
    yield* guardedRound(
      registration.resumeProviders.pipe(Effect.tap(logRepairs("provider operations in flight sent to the registry"))),
      "resume"
    )
  }
}).pipe(Effect.annotateLogs({ service: "Resume" }))

/** The three loops as a background Layer: started with the layer, interrupted when its scope closes. */
export const layer = (options: HeartbeatOptions): Layer.Layer<never, never, RegistrationService | NeuronHealth> =>
  Layer.scopedDiscard(
    Effect.all([
      Effect.forkScoped(heartbeatLoop(options)),
      Effect.forkScoped(antiEntropyLoop(options)),
      Effect.forkScoped(resumeLoop)
    ])
  )
