/**
 * Jitter spread: 1 000 simulated Neurons lose the registry at the same moment (t = 0, each one's beat fails then).
 * For the first 5 minutes, the largest number of retries that land in any one second, with the real `backoff`
 * schedule (base 5 s, ceiling 240 s, full jitter), against the same schedule without jitter and with Effect's
 * default ±20 % jitter applied after the cap. Time is simulated: the delays are computed, nothing sleeps. Each
 * retry is assumed to fail at once (connection refused); the failure at t = 0 itself is not counted.
 *
 * Run: `pnpm tsx bench/jitter/index.ts`
 */
import * as Schedule from "effect/Schedule"
import { backoff, delays } from "../../src/heartbeat/Backoff.js"

const NEURONS = 1000
const WINDOW_MS = 5 * 60_000
const BASE = 5_000
const CEILING = 240_000
// Enough steps for the window in nearly every case; a Neuron whose short delays need more is recomputed.
const STEPS = 40

interface Spread {
  readonly maxPerSecond: number
  readonly atSecond: number
  readonly total: number
  readonly busySeconds: number
  readonly largestDelayMs: number
}

const spread = (schedule: Schedule.Schedule<unknown>, seedBase: number): Spread => {
  const perSecond = new Array<number>(WINDOW_MS / 1000).fill(0)
  let largest = 0
  for (let i = 0; i < NEURONS; i++) {
    const times: Array<number> = []
    for (let steps = STEPS; times.length === 0 || times[times.length - 1]! < WINDOW_MS; steps *= 4) {
      times.length = 0
      let t = 0
      for (const d of delays(schedule, steps, seedBase + i)) {
        largest = Math.max(largest, d)
        t += d
        times.push(t)
        if (t >= WINDOW_MS) break
      }
    }
    for (const t of times) if (t < WINDOW_MS) perSecond[Math.floor(t / 1000)]!++
  }
  const maxPerSecond = Math.max(...perSecond)
  return {
    maxPerSecond,
    atSecond: perSecond.indexOf(maxPerSecond),
    total: perSecond.reduce((a, b) => a + b, 0),
    busySeconds: perSecond.filter((n) => n > 0).length,
    largestDelayMs: largest
  }
}

const line = (name: string, s: Spread) =>
  console.log(
    `${name.padEnd(34)} max retries in one second: ${String(s.maxPerSecond).padStart(4)} (at t=${s.atSecond}s)` +
      `  retries in 5 min: ${String(s.total).padStart(5)}  seconds with a retry: ${String(s.busySeconds).padStart(3)}` +
      `  largest delay: ${(s.largestDelayMs / 1000).toFixed(1)}s`
  )

const started = performance.now()
const capped = Schedule.exponential(BASE, 2).pipe(Schedule.union(Schedule.spaced(CEILING)))

console.log(`Jitter spread: ${NEURONS} Neurons lose the registry at t=0; first ${WINDOW_MS / 60_000} minutes,`)
console.log(`backoff base ${BASE / 1000}s, ceiling ${CEILING / 1000}s, retries bucketed by second (simulated time).`)
line("no jitter", spread(capped, 0))
line("±20% jitter after the cap (trap)", spread(Schedule.jittered(capped), 0))
const full = spread(backoff({ base: BASE, ceiling: CEILING }), 0)
line("full jitter (backoff, seeds 0..)", full)
line("full jitter (backoff, seeds 1e6..)", spread(backoff({ base: BASE, ceiling: CEILING }), 1_000_000))
console.log(
  `full jitter: largest delay ${(full.largestDelayMs / 1000).toFixed(1)}s <= ceiling ${CEILING / 1000}s: ${
    full.largestDelayMs <= CEILING ? "yes" : "NO"
  }`
)
console.log(`computed in ${((performance.now() - started) / 1000).toFixed(2)}s`)
