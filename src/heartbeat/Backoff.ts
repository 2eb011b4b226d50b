/**
 * The heartbeat's schedules: a steady interval while the registry answers, capped exponential backoff with full
 * jitter after a failure (STYLE.md point 8), and the schedule that switches between the two.
 *
 * Full jitter inside the cap: every delay is uniform in [0, min(ceiling, base * 2^n)], so 1 000 Neurons that lose
 * the registry together do not come back together, and no delay ever exceeds the ceiling (`Schedule.jittered`
 * after a cap would overshoot it by up to 20 %). Checked on effect 3.22 over 5 000 steps (past 2^1024, where the
 * exponential becomes infinite): every delay stays within [0, ceiling].
 */
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleInterval from "effect/ScheduleInterval"
import * as ScheduleIntervals from "effect/ScheduleIntervals"

/** Backoff settings: the first delay's upper bound and the largest delay. */
export interface BackoffOptions {
  readonly base: Duration.DurationInput
  readonly ceiling: Duration.DurationInput
}

/** Every `interval`, exactly; with `jitter` (a fraction such as 0.2), uniform in interval × [1 − jitter, 1 + jitter]. */
export const steady = (
  interval: Duration.DurationInput,
  options?: { readonly jitter?: number }
): Schedule.Schedule<Duration.Duration> => {
  const jitter = options?.jitter ?? 0
  const spaced = Schedule.spaced(interval)
  return Schedule.delays(jitter > 0 ? Schedule.jitteredWith(spaced, { min: 1 - jitter, max: 1 + jitter }) : spaced)
}

/**
 * Exponential backoff from `base` (factor 2) with full jitter, every delay capped at `ceiling`; forever.
 * Outputs the delay it is about to wait (for `next_attempt_at`).
 */
export const backoff = (options: BackoffOptions): Schedule.Schedule<Duration.Duration> =>
  Schedule.exponential(options.base, 2).pipe(
    // The union takes the earlier of the two, so the cap applies before the jitter scales the delay down.
    Schedule.union(Schedule.spaced(options.ceiling)),
    Schedule.jitteredWith({ min: 0, max: 1 }),
    Schedule.delays
  )

/** Heartbeat settings: the steady interval and the backoff used after failures. */
export interface HeartbeatScheduleOptions extends BackoffOptions {
  readonly interval: Duration.DurationInput
}

/**
 * The heartbeat's schedule. Input: whether the last attempt succeeded. After a success: the steady interval, and
 * the backoff starts over; after each failure: the next backoff delay. Outputs the delay it is about to wait.
 *
 * `Effect.repeat(beat.pipe(Effect.as(true), Effect.catchAll(() => Effect.succeed(false))), heartbeatSchedule(o))`
 * beats at once, then forever; `Schedule.tapOutput` sees each delay before the wait.
 */
export const heartbeatSchedule = (options: HeartbeatScheduleOptions): Schedule.Schedule<Duration.Duration, boolean> => {
  const interval = Duration.decode(options.interval)
  const failures = backoff(options)
  return Schedule.makeWithState(failures.initial, (now, succeeded: boolean, state) => {
    if (succeeded) {
      return Effect.succeed(
        [
          failures.initial,
          interval,
          ScheduleDecision.continueWith(ScheduleInterval.after(now + Duration.toMillis(interval)))
        ] as const
      )
    }
    return Effect.map(failures.step(now, undefined, state), ([next, _, decision]) => {
      if (ScheduleDecision.isDone(decision)) return [next, Duration.zero, decision] as const
      const delay = Duration.millis(Math.max(0, ScheduleIntervals.start(decision.intervals) - now))
      return [next, delay, decision] as const
    })
  })
}

/**
 * The first `inputs` delays of `schedule` in milliseconds, starting at time 0, with a seeded Random: the same seed
 * gives the same delays. `inputs` is a count (each input `undefined`) or the inputs themselves.
 */
export const delays = <In>(
  schedule: Schedule.Schedule<unknown, In>,
  inputs: number | ReadonlyArray<In>,
  seed: unknown
): ReadonlyArray<number> => {
  const ins = typeof inputs === "number" ? Array.from({ length: inputs }, () => undefined as In) : inputs
  return Schedule.run(Schedule.delays(schedule), 0, ins).pipe(
    Effect.withRandom(Random.make(seed)),
    Effect.runSync,
    Chunk.toReadonlyArray,
    (ds) => ds.map(Duration.toMillis)
  )
}
