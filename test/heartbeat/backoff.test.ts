import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import { backoff, delays, heartbeatSchedule, steady } from "../../src/heartbeat/Backoff.js"

const base = 5_000
const ceiling = 240_000
const interval = 60_000
const bound = (n: number) => Math.min(ceiling, base * 2 ** n)
const seeds = [1, 2, 3, 42, 1234]

describe("backoff: capped exponential with full jitter", () => {
  it("over 200 delays and several seeds, delay n is within [0, min(ceiling, base * 2^n)] and never above the ceiling", () => {
    for (const seed of seeds) {
      const ds = delays(backoff({ base, ceiling }), 200, seed)
      assert.strictEqual(ds.length, 200)
      ds.forEach((d, n) => {
        assert.isAtLeast(d, 0, `seed ${seed} delay ${n}`)
        assert.isAtMost(d, bound(n), `seed ${seed} delay ${n}`)
      })
      assert.isAtMost(Math.max(...ds), ceiling)
      // Jitter spreads: the delays at the cap are not all the same.
      assert.isAbove(new Set(ds.slice(10).map(Math.round)).size, 150)
    }
  })

  it("the jitter is full: at the cap, delays cover close to all of [0, ceiling] with a mean near half", () => {
    const fractions = seeds.flatMap((seed) => delays(backoff({ base, ceiling }), 400, seed).slice(8)).map((d) =>
      d / ceiling
    )
    assert.isBelow(Math.min(...fractions), 0.02)
    assert.isAbove(Math.max(...fractions), 0.98)
    const mean = fractions.reduce((a, b) => a + b, 0) / fractions.length
    assert.isAbove(mean, 0.45)
    assert.isBelow(mean, 0.55)
  })

  it("delays grow until the cap: the mean of delay n over 300 seeds tracks min(ceiling, base * 2^n) / 2", () => {
    const runs = Array.from({ length: 300 }, (_, seed) => delays(backoff({ base, ceiling }), 10, seed))
    const means = Array.from({ length: 10 }, (_, n) => runs.reduce((sum, ds) => sum + ds[n]!, 0) / runs.length)
    means.forEach((m, n) => {
      assert.isAbove(m, bound(n) * 0.4, `mean of delay ${n}`)
      assert.isBelow(m, bound(n) * 0.6, `mean of delay ${n}`)
    })
    for (let n = 1; n <= 5; n++) assert.isAbove(means[n]!, means[n - 1]!, `delay ${n} grows`)
  })

  it("the same seed gives the same delays, another seed others", () => {
    assert.deepStrictEqual(delays(backoff({ base, ceiling }), 20, 9), delays(backoff({ base, ceiling }), 20, 9))
    assert.notDeepEqual(delays(backoff({ base, ceiling }), 20, 9), delays(backoff({ base, ceiling }), 20, 10))
  })

  it("without the jitter the same delays would be 5, 10, 20, 40, 80, 160, then 240 s (what the cap does)", () => {
    const plain = Schedule.exponential(base, 2).pipe(Schedule.union(Schedule.spaced(ceiling)))
    assert.deepStrictEqual(delays(plain, 9, 0), [5, 10, 20, 40, 80, 160, 240, 240, 240].map((s) => s * 1000))
  })
})

describe("steady", () => {
  it("waits exactly the interval, or within ± the jitter fraction", () => {
    assert.deepStrictEqual(delays(steady(interval), 5, 0), [interval, interval, interval, interval, interval])
    const jittered = delays(steady(300_000, { jitter: 0.2 }), 200, 3)
    for (const d of jittered) {
      assert.isAtLeast(d, 240_000)
      assert.isAtMost(d, 360_000)
    }
    assert.isAbove(new Set(jittered).size, 150)
  })
})

describe("heartbeatSchedule: backoff after a failure, steady interval after a success", () => {
  it("backs off on consecutive failures, returns to the interval on the first success, and starts over", () => {
    const outcomes = [false, false, false, true, true, false, false, true]
    for (const seed of seeds) {
      const ds = delays(heartbeatSchedule({ interval, base, ceiling }), outcomes, seed)
      assert.isAtMost(ds[0]!, 5_000)
      assert.isAtMost(ds[1]!, 10_000)
      assert.isAtMost(ds[2]!, 20_000)
      assert.strictEqual(ds[3], interval)
      assert.strictEqual(ds[4], interval)
      // The backoff starts over from the base after a success.
      assert.isAtMost(ds[5]!, 5_000)
      assert.isAtMost(ds[6]!, 10_000)
      assert.strictEqual(ds[7], interval)
    }
  })

  it("after 200 failures in a row every delay is still at or under the ceiling", () => {
    for (const seed of seeds) {
      const ds = delays(heartbeatSchedule({ interval, base, ceiling }), Array(200).fill(false), seed)
      assert.isAtMost(Math.max(...ds), ceiling)
      assert.isAtLeast(Math.min(...ds), 0)
    }
  })
})

/** Records the TestClock time of each attempt; `up(now)` says whether the registry answers at that time. */
const attempts = (up: (now: number) => boolean) =>
  Effect.gen(function*() {
    const times = yield* Ref.make<ReadonlyArray<number>>([])
    const attempt = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* Ref.update(times, (ts) => [...ts, now])
      return up(now)
    })
    return { times, attempt }
  })

const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((t, i) => t - times[i]!)

describe("under TestClock (forked fiber)", () => {
  it.effect("30 minutes of a failing call retried with backoff: attempts at the expected instants, no gap over the ceiling", () =>
    Effect.gen(function*() {
      const { attempt, times } = yield* attempts(() => false)
      const fiber = yield* attempt.pipe(
        Effect.flatMap((ok) => ok ? Effect.void : Effect.fail("unreachable")),
        Effect.retry(backoff({ base, ceiling })),
        Effect.withRandom(Random.make(7)),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.minutes(30))
      const ts = yield* Ref.get(times)
      // The same seed, computed without a clock: the retries happened exactly then.
      const expected = delays(backoff({ base, ceiling }), ts.length - 1, 7)
      gaps(ts).forEach((gap, i) => assert.closeTo(gap, expected[i]!, 1, `gap ${i}`))
      assert.isAtMost(Math.max(...gaps(ts)), ceiling)
      // 30 minutes at no more than 4 minutes apart: at least 8 attempts after the first 6 backoff steps.
      assert.isAtLeast(ts.length, 14)
      assert.isAtMost(1_800_000 - ts[ts.length - 1]!, ceiling)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("registry down for 20 minutes, then back: every wait <= ceiling, recovery within one ceiling, then steady", () =>
    Effect.gen(function*() {
      const downUntil = 20 * 60_000
      const { attempt, times } = yield* attempts((now) => now >= downUntil)
      const fiber = yield* attempt.pipe(
        Effect.repeat(heartbeatSchedule({ interval, base, ceiling })),
        Effect.withRandom(Random.make(11)),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.minutes(40))
      const ts = yield* Ref.get(times)
      const firstUp = ts.findIndex((t) => t >= downUntil)
      assert.isAbove(firstUp, 0)
      assert.isAtMost(Math.max(...gaps(ts.slice(0, firstUp + 1))), ceiling)
      assert.isAtMost(ts[firstUp]! - downUntil, ceiling)
      // After the first success: exactly the steady interval.
      for (const gap of gaps(ts.slice(firstUp))) assert.strictEqual(gap, interval)
      assert.isAtLeast(ts.length - firstUp, 15)
      yield* Fiber.interrupt(fiber)
    }))
})
