/**
 * What tracing costs the Neuron: its heartbeat call and its handshakes, each in several modes run alternately in
 * the same run (the order rotated each round, round 0 a warm-up) so that the machine's noise falls on all alike.
 * Each mode is a Layer under the Neuron's, as `src/main.ts` provides `Tracing.layer` under its own:
 *
 * - `spans off`: `Layer.setTracerEnabled(false)`: no span is recorded at all. The baseline: the code as it would
 *   run with no spans in it.
 * - `no exporter`: `Tracing.layer` with no `OTEL_*` variable, what `pnpm start` runs with
 *   `OTEL_EXPORTER_OTLP_ENDPOINT` unset.
 * - `OTLP`: `Tracing.layer` with `OTEL_EXPORTER_OTLP_ENDPOINT` set: every span exported (protobuf) to a collector
 *   stand-in in a child process answering 200.
 * - `Effect's tracer`: no tracing layer at all, so Effect's built-in tracer records
 *   every span in memory and drops it: what `no exporter` did before spans were made conditional on an exporter,
 *   and what a host embedding `Neuron.layer` without a tracer of its own gets.
 * - DIAGNOSE=1 adds two modes that find where that cost goes: `tracer, no client span` (Effect's tracer, the
 *   HTTP client's span disabled by `HttpClient.currentTracerDisabledWhen`) and `tracer, no propagation` (the
 *   client's span kept, no `traceparent` header sent).
 *
 * Only the Neuron's side runs in this process: the Axon registry is `node dist/axon.js` in a child process, the
 * patients' side of the handshakes another (patients.ts), the collector a third. So `process.cpuUsage()` here is
 * the Neuron's CPU time, and the figure per operation is what its tracing costs it. An `OTLP` segment ends with a
 * 1.2 s pause inside its CPU window (outside its rate), long enough for the exporter's batch of that segment to be
 * encoded and posted within it and not in the next segment's window. Rounds are short and many, so that a change
 * of the machine's load falls on every mode alike; the paired figure compares each round with its own baseline.
 *
 * Heartbeat: `AxonClient.updateEndpoint` (the heartbeat's registry call, with its span and the HTTP client's),
 * sequentially, run in the fiber references its Layer was built with (as the heartbeat loop's fiber is).
 * Handshake: complete handshakes against a whole Neuron per mode, 8 at a time. SQLite on /dev/shm.
 *
 * Run: `pnpm bench tracing` (ROUNDS, HEARTBEATS, HANDSHAKES change the amounts; MODES="spans off,no exporter"
 * picks modes; DIAGNOSE=1 adds the diagnostic ones).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpServer from "@effect/platform/HttpServer"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { AxonClient } from "../../src/axon/AxonClient.js"
import { defaults, NeuronConfig } from "../../src/config/NeuronConfig.js"
import { withCheckDigit } from "../../src/domain/Npi.js"
import type { Npi } from "../../src/domain/Npi.js"
import * as NodeServer from "../../src/http/NodeServer.js"
import * as Neuron from "../../src/Neuron.js"
import * as Tracing from "../../src/observability/Tracing.js"
import { RegisterNeuronRequest } from "../../src/protocol/AxonApi.js"
import { Built, captured, localLayer } from "./modes.js"

const ROUNDS = Number(process.env.ROUNDS ?? 21)
const HEARTBEATS = Number(process.env.HEARTBEATS ?? 200)
const HANDSHAKES = Number(process.env.HANDSHAKES ?? 100)
const SETTLE_MS = 1200
const npi = (n: number) => withCheckDigit("1" + String(n).padStart(8, "0")) as Npi

const ALL_MODES = [
  "spans off",
  "no exporter",
  "OTLP",
  "Effect's tracer",
  "tracer, no client span",
  "tracer, no propagation"
] as const
type Mode = typeof ALL_MODES[number]
const MODES: ReadonlyArray<Mode> = process.env.MODES !== undefined
  ? process.env.MODES.split(",").map((m) => m.trim()).map((m) => {
    if (!(ALL_MODES as ReadonlyArray<string>).includes(m)) throw new Error(`unknown mode ${m}: ${ALL_MODES}`)
    return m as Mode
  })
  : process.env.DIAGNOSE === "1"
  ? ALL_MODES
  : ["spans off", "no exporter", "Effect's tracer", "OTLP"]
if (MODES[0] !== "spans off") throw new Error("the first mode is the baseline: \"spans off\"")

const here = Path.dirname(fileURLToPath(import.meta.url))
const root = Path.resolve(here, "../..")
const children = new Set<ChildProcess>()
const kill = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })
/** A child process, killed at the end of the scope. */
const own = (start: () => ChildProcess) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = start()
      children.add(child)
      return child
    }),
    (child) => Effect.zipRight(kill(child), Effect.sync(() => children.delete(child)))
  )
process.once("exit", () => children.forEach((c) => c.kill("SIGKILL")))

const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** `node dist/axon.js` (as `pnpm start:axon` runs it), no tracing, resolved once `/health` answers. */
const startRegistry = (dataDir: string) =>
  Effect.gen(function*() {
    const port = yield* freePort
    yield* own(() =>
      spawn(process.execPath, ["--enable-source-maps", "dist/axon.js"], {
        cwd: root,
        env: { PATH: process.env.PATH ?? "", AXON_HOST: "127.0.0.1", AXON_PORT: String(port), AXON_DATA_DIR: dataDir },
        stdio: ["ignore", "ignore", "inherit"]
      })
    )
    const url = `http://127.0.0.1:${port}`
    yield* Effect.tryPromise(() => fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })).pipe(
      Effect.filterOrFail((r) => r.ok),
      Effect.retry(Schedule.spaced(Duration.millis(20)).pipe(Schedule.intersect(Schedule.recurs(1500)))),
      Effect.orDie
    )
    return url
  })

/** A collector stand-in in its own process: answers every POST with 200 after reading it. */
const startCollector = Effect.gen(function*() {
  const child = yield* own(() =>
    spawn(process.execPath, [
      "-e",
      `const s=require("http").createServer((q,r)=>{q.resume();q.on("end",()=>{r.writeHead(200,{"content-type":"application/json"});r.end("{}")})});
       s.listen(0,"127.0.0.1",()=>console.log(s.address().port))`
    ], { stdio: ["ignore", "pipe", "inherit"] })
  )
  return yield* Effect.async<string>((resume) => {
    child.stdout!.once("data", (d: Buffer) => resume(Effect.succeed(`http://127.0.0.1:${String(d).trim()}`)))
  })
})

/** The patients' process (patients.ts, with tsx), once it is ready. */
const startPatients = Effect.gen(function*() {
  const child = yield* own(() =>
    fork(Path.join(here, "patients.ts"), [], { execArgv: ["--import", "tsx"], stdio: "inherit" })
  )
  yield* Effect.async<void>((resume) => void child.once("message", () => resume(Effect.void)))
  return child
})

const ask = <A>(child: ChildProcess, message: object) =>
  Effect.async<A>((resume) => {
    child.once("message", (answer: A) => resume(Effect.succeed(answer)))
    child.send(message)
  })

/** The Layer a mode puts under the Neuron's, as `src/main.ts` puts `Tracing.layer` under its own. */
const modeLayer = (mode: Mode, collectorUrl: string): Layer.Layer<never> => {
  const tracing = (variables: Record<string, string>) =>
    Tracing.layer("neuron").pipe(
      Layer.provide(NodeHttpClient.layerUndici),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables))))),
      Layer.orDie
    )
  switch (mode) {
    case "no exporter":
      return tracing({})
    case "OTLP":
      return tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl, OTEL_SERVICE_NAME: "neuron-bench" })
    default:
      return localLayer(mode)
  }
}

/**
 * Builds `layer` on the run's scope in a fiber of its own, so that the fiber references the mode sets stay with
 * that build (and its runtime), never with this bench's fiber or the next mode's build.
 */
const buildIsolated = <A>(layer: Layer.Layer<A>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Layer.build(layer))
    const exit = yield* Fiber.await(fiber)
    return yield* Exit.isSuccess(exit) ? Effect.succeed(exit.value) : Effect.die(exit.cause)
  })

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

const program = Effect.gen(function*() {
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: root, stdio: "inherit" })
  const dir = Fs.mkdtempSync(Path.join(Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir(), "bench-tracing-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
  const registryUrl = yield* startRegistry(Path.join(dir, "axon"))
  const collectorUrl = yield* startCollector
  const patients = yield* startPatients

  // Heartbeat: per mode, an AxonClient built over the mode's layer and one registration beaten by it.
  const beaters = yield* Effect.forEach(MODES, (mode, i) =>
    Effect.gen(function*() {
      const context = yield* buildIsolated(
        captured.pipe(
          Layer.provideMerge(
            AxonClient.layer({ urls: [registryUrl], timeout: Duration.seconds(10), enrollmentToken: Option.none() })
          ),
          Layer.provide(NodeHttpClient.layerUndici),
          Layer.provide(modeLayer(mode, collectorUrl))
        )
      )
      const client = Context.get(context, AxonClient)
      const run = Runtime.runPromise(Context.get(context, Built))
      const registration = yield* Effect.promise(() =>
        run(client.registerNeuron(
          new RegisterNeuronRequest({
            organization_npi: npi(800 + i),
            organization_name: `Bench ${i}`,
            organization_type: "practice",
            neuron_endpoint_url: `https://bench-${i}.example`
          })
        ))
      )
      const beat = client.updateEndpoint(registration, `https://bench-${i}.example`)
      const beats = (n: number) => Effect.promise(() => run(Effect.repeatN(beat, n - 1)))
      return { mode, beats }
    }))

  // Handshake: a whole Neuron per mode, built over the mode's layer (its server's fibers get what it set).
  const neurons = yield* Effect.forEach(MODES, (mode, i) =>
    Effect.gen(function*() {
      const settings = {
        ...defaults(),
        organization: Option.some({ npi: npi(900 + i), name: `Bench Neuron ${i}` }),
        dataDir: Path.join(dir, `neuron-${i}`),
        registryUrls: [registryUrl],
        publicUrl: `https://bench-neuron-${i}.example`
      }
      const context = yield* buildIsolated(
        Neuron.layer.pipe(
          Layer.provideMerge(NodeServer.layer({ host: "127.0.0.1", port: 0 })),
          Layer.provide([Neuron.layerSqlite, NodeHttpClient.layerUndici]),
          Layer.provide(NeuronConfig.layer(settings)),
          Layer.provide(NodeContext.layer),
          Layer.provide(modeLayer(mode, collectorUrl)),
          Layer.orDie
        )
      )
      const provider = npi(950 + i)
      yield* Context.get(context, Neuron.Neuron).addProvider({ provider_npi: provider })
      return { mode, url: NodeServer.urlOf(Context.get(context, HttpServer.HttpServer)), provider }
    }))

  const heartbeatRates: Record<string, Array<number>> = {}
  const handshakeRates: Record<string, Array<number>> = {}
  const heartbeatCpu: Record<string, Array<number>> = {}
  const handshakeCpu: Record<string, Array<number>> = {}
  let failures = 0
  const started = Date.now()
  const loadBefore = Os.loadavg()
  for (let round = 0; round < ROUNDS + 1; round++) {
    // Rotate the order each round: no mode always runs first (or right after the same other one).
    const order = MODES.map((_, k) => MODES[(k + round) % MODES.length]!)
    for (const mode of order) {
      const beater = beaters.find((b) => b.mode === mode)!
      const cpu = cpuMicros()
      const start = performance.now()
      yield* beater.beats(HEARTBEATS)
      const perSecond = HEARTBEATS / ((performance.now() - start) / 1000)
      if (mode === "OTLP") yield* Effect.sleep(SETTLE_MS)
      if (round > 0) { // round 0 warms up
        ;(heartbeatRates[mode] ??= []).push(perSecond)
        ;(heartbeatCpu[mode] ??= []).push((cpuMicros() - cpu) / HEARTBEATS)
      }

      const target = neurons.find((t) => t.mode === mode)!
      const cpuBefore = cpuMicros()
      const began = performance.now()
      const answer = yield* ask<{ failed: number }>(patients, {
        cmd: "run",
        url: target.url,
        provider: target.provider,
        count: HANDSHAKES,
        concurrency: 8
      })
      failures += answer.failed
      const handshakesPerSecond = HANDSHAKES / ((performance.now() - began) / 1000)
      if (mode === "OTLP") yield* Effect.sleep(SETTLE_MS)
      if (round > 0) {
        ;(handshakeRates[mode] ??= []).push(handshakesPerSecond)
        ;(handshakeCpu[mode] ??= []).push((cpuMicros() - cpuBefore) / HANDSHAKES)
      }
    }
  }

  const report = (what: string, rates: Record<string, Array<number>>, cpu: Record<string, Array<number>>) => {
    const baseRate = median(rates["spans off"]!)
    const baseCpu = median(cpu["spans off"]!)
    console.log(
      `\n${what}: median of ${ROUNDS} rounds, difference against "spans off" (+: costs more); paired: the median ` +
        `of the rounds' own differences (each round against that round's "spans off")`
    )
    const pct = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)} %`
    for (const mode of MODES) {
      const r = median(rates[mode]!)
      const c = median(cpu[mode]!)
      const paired = median(cpu[mode]!.map((x, k) => (x / cpu["spans off"]![k]! - 1) * 100))
      console.log(
        `  ${mode.padEnd(22)} CPU ${c.toFixed(0).padStart(6)} µs/op (${pct(((c - baseCpu) / baseCpu) * 100)}, paired ${
          pct(paired)
        })   rate ${r.toFixed(0).padStart(5)}/s (${pct(((baseRate - r) / baseRate) * 100)})   CPU by round: ${
          cpu[mode]!.map((x) => x.toFixed(0)).join(" ")
        }`
      )
    }
  }
  const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")
  console.log(
    `tracing cost: ${HEARTBEATS} heartbeat calls and ${HANDSHAKES} handshakes per mode a round, ${ROUNDS} rounds ` +
      `after a warm-up, modes: ${MODES.join(" | ")}; data on ${dir}\n` +
      `${Os.cpus().length} cores (${Os.cpus()[0]?.model.trim()}); load average before ${load(loadBefore)}, after ${
        load(Os.loadavg())
      }; ${((Date.now() - started) / 1000).toFixed(0)} s; handshakes failed: ${failures}`
  )
  report("Heartbeat calls (AxonClient.updateEndpoint, sequential), the Neuron's CPU", heartbeatRates, heartbeatCpu)
  report("Handshakes (complete, 8 concurrent), the Neuron's CPU", handshakeRates, handshakeCpu)
})

await Effect.runPromise(
  program.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), Effect.provide(Logger.pretty))
)
