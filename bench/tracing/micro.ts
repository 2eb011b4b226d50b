/**
 * `pnpm bench tracing-micro`: where the span cost of a heartbeat call goes, without the network. The Neuron's
 * `AxonClient.updateEndpoint` runs over an `HttpClient` made with `HttpClient.make` (so the platform's own client
 * span and `traceparent` header are there) whose request answers at once with a canned heartbeat answer. What is
 * left is the call's Effect work: the request built and encoded, the answer decoded, the spans.
 *
 * Modes, alternated in rounds in one process (the order rotated each round, round 0 a warm-up), each run in the
 * fiber references its Layer set, as in index.ts: `spans off` (the baseline), `no exporter` (`Tracing.layer` with
 * no OTEL_* variable), `Effect's tracer` (spans made and dropped, what `no exporter` was before), `tracer, no
 * client span`, `tracer, no propagation`. Figure: CPU time per call (`process.cpuUsage`), median of the rounds,
 * and paired: the median of each round's own difference against that round's `spans off`.
 *
 * Run: `pnpm bench tracing-micro` (ROUNDS, CALLS).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Os from "node:os"
import { AxonClient } from "../../src/axon/AxonClient.js"
import * as Tracing from "../../src/observability/Tracing.js"
import { Built, captured, localLayer } from "./modes.js"

const ROUNDS = Number(process.env.ROUNDS ?? 41)
const CALLS = Number(process.env.CALLS ?? 500)

const MODES = [
  "spans off",
  "no exporter",
  "Effect's tracer",
  "tracer, no client span",
  "tracer, no propagation"
] as const
type Mode = typeof MODES[number]

const answer = JSON.stringify({ status: "reachable", last_heartbeat_at: "2026-12-03T12:00:00.000Z" })
/** An HttpClient whose every request is answered at once, through the platform's `make` (its span included). */
const instant = Layer.succeed(
  HttpClient.HttpClient,
  HttpClient.make((request) =>
    Effect.succeed(
      HttpClientResponse.fromWeb(
        request,
        new Response(answer, { status: 200, headers: { "content-type": "application/json" } })
      )
    )
  )
)

const modeLayer = (mode: Mode): Layer.Layer<never> => {
  switch (mode) {
    case "no exporter":
      return Tracing.layer("neuron").pipe(
        Layer.provide(instant),
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))),
        Layer.orDie
      )
    default:
      return localLayer(mode)
  }
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

const program = Effect.gen(function*() {
  const runners = yield* Effect.forEach(MODES, (mode) =>
    Effect.gen(function*() {
      // Built in a fiber of its own: the references the mode sets stay with its runtime.
      const context = yield* Effect.fork(Layer.build(
        captured.pipe(
          Layer.provideMerge(AxonClient.layer({
            urls: ["http://registry.invalid"],
            timeout: Duration.seconds(10),
            enrollmentToken: Option.none()
          })),
          Layer.provide(instant),
          Layer.provide(modeLayer(mode))
        )
      )).pipe(Effect.flatMap((fiber) => fiber.await), Effect.flatten)
      const client = Context.get(context, AxonClient)
      const beat = client.updateEndpoint(
        { registration_id: "reg-1", bearer_token: Redacted.make("token-1") },
        "https://neuron.example"
      )
      const run = Runtime.runPromise(Context.get(context, Built))
      return { mode, calls: (n: number) => Effect.promise(() => run(Effect.repeatN(beat, n - 1))) }
    }))
  const cpu: Record<string, Array<number>> = {}
  const loadBefore = Os.loadavg()
  for (let round = 0; round <= ROUNDS; round++) {
    for (let k = 0; k < runners.length; k++) {
      const runner = runners[(k + round) % runners.length]!
      const before = cpuMicros()
      yield* runner.calls(CALLS)
      if (round > 0) (cpu[runner.mode] ??= []).push((cpuMicros() - before) / CALLS)
    }
  }
  const base = median(cpu["spans off"]!)
  const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")
  console.log(
    `heartbeat call without the network: ${CALLS} calls per mode a round, median of ${ROUNDS} rounds after a ` +
      `warm-up; load average before ${load(loadBefore)}, after ${load(Os.loadavg())}`
  )
  for (const mode of MODES) {
    const c = median(cpu[mode]!)
    const paired = median(cpu[mode]!.map((x, k) => (x / cpu["spans off"]![k]! - 1) * 100))
    console.log(
      `  ${mode.padEnd(22)} ${c.toFixed(1).padStart(6)} µs/call (${c >= base ? "+" : ""}${
        (c - base).toFixed(1)
      } µs; paired ${paired >= 0 ? "+" : ""}${paired.toFixed(1)} %)   by round: ${
        cpu[mode]!.map((x) => x.toFixed(1)).join(" ")
      }`
    )
  }
})

await Effect.runPromise(Effect.scoped(program))
