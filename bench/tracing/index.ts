/**
 * What tracing costs: the Neuron's heartbeat call and its handshakes, each in three modes, run alternately in the
 * same process so that the machine's noise falls on all of them alike:
 *
 * - `spans off`: Effect's tracer disabled (`Effect.withTracerEnabled(false)`): no span is even created. This is the
 *   baseline: the code as it ran before it had spans to export.
 * - `no exporter`: what `pnpm start` does with `OTEL_EXPORTER_OTLP_ENDPOINT` unset (Effect's default tracer: spans
 *   are made in memory and dropped).
 * - `OTLP`: an exporter posting every span to a collector (a node:http receiver in a child process, answering 200).
 *
 * Heartbeat: `AxonClient.updateEndpoint` against the real registry (the Neuron's heartbeat call: its span and the
 * HTTP client's), sequentially. Handshake: complete handshakes (consent token, challenge, relationship) against a
 * whole Neuron per mode, 8 at a time; the patient's side runs with its tracer disabled in every mode. SQLite on
 * /dev/shm (TRAPS.md: fsync on the work disk is noisy).
 *
 * Two figures per mode: the rate (wall clock) and the process's CPU time per operation (`process.cpuUsage`, user
 * and system). The registry, the Neurons and the patients' side all run in this process; only the Neuron's side
 * changes between modes, so the CPU difference is what tracing costs it. On a shared, loaded machine the CPU figure
 * is the steadier one: another process's load stretches the wall clock, much less this process's CPU time.
 *
 * Run: `pnpm bench tracing` (ROUNDS, HEARTBEATS, HANDSHAKES to change the amounts).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import type * as Tracer from "effect/Tracer"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AxonClient } from "../../src/axon/AxonClient.js"
import { handshake, handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { defaults, NeuronConfig } from "../../src/config/NeuronConfig.js"
import { withCheckDigit } from "../../src/domain/Npi.js"
import type { Npi } from "../../src/domain/Npi.js"
import * as NodeServer from "../../src/http/NodeServer.js"
import * as Neuron from "../../src/Neuron.js"
import * as Tracing from "../../src/observability/Tracing.js"
import { RegisterNeuronRequest } from "../../src/protocol/AxonApi.js"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const HEARTBEATS = Number(process.env.HEARTBEATS ?? 400)
const HANDSHAKES = Number(process.env.HANDSHAKES ?? 200)
const npi = (n: number) => withCheckDigit("1" + String(n).padStart(8, "0")) as Npi

type Mode = "spans off" | "no exporter" | "OTLP"
const MODES: ReadonlyArray<Mode> = ["spans off", "no exporter", "OTLP"]

/** A collector stand-in in its own process: answers every POST with 200 after reading it. */
const startCollector = Effect.acquireRelease(
  Effect.async<{ url: string; kill: () => void }>((resume) => {
    const child = spawn(process.execPath, [
      "-e",
      `const s=require("http").createServer((q,r)=>{q.resume();q.on("end",()=>{r.writeHead(200,{"content-type":"application/json"});r.end("{}")})});
       s.listen(0,"127.0.0.1",()=>console.log(s.address().port))`
    ], { stdio: ["ignore", "pipe", "inherit"] })
    child.stdout.once(
      "data",
      (d: Buffer) => resume(Effect.succeed({ url: `http://127.0.0.1:${String(d).trim()}`, kill: () => child.kill() }))
    )
  }),
  (c) => Effect.sync(c.kill)
)

/** Runs `effect` in `mode`: the tracer given to it, or tracing disabled. */
const inMode = (mode: Mode, otlp: Tracer.Tracer) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  mode === "spans off"
    ? Effect.withTracerEnabled(effect, false)
    : mode === "OTLP"
    ? Effect.withTracer(effect, otlp)
    : effect

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const program = Effect.gen(function*() {
  const dir = Fs.mkdtempSync(Path.join(Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir(), "bench-tracing-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
  const collector = yield* startCollector
  const http = yield* Layer.build(NodeHttpClient.layerUndici)
  const otlp = yield* Tracing.make({
    url: `${collector.url}/v1/traces`,
    protocol: "http/protobuf",
    headers: Option.none(),
    serviceName: "neuron-bench"
  }).pipe(Effect.provide(http))

  const registryContext = yield* Layer.build(
    AxonRegistry.layer({ dataDir: Path.join(dir, "axon"), enrollmentToken: Option.none() }).pipe(
      Layer.provideMerge(NodeServer.layer({ host: "127.0.0.1", port: 0 }))
    )
  )
  const registryUrl = NodeServer.urlOf(Context.get(registryContext, HttpServer.HttpServer))

  // Heartbeat: one registration per mode, each beaten by a client built in that mode.
  const beaters = yield* Effect.forEach(MODES, (mode, i) =>
    Effect.gen(function*() {
      const client = yield* AxonClient.make({
        urls: [registryUrl],
        timeout: Duration.seconds(10),
        enrollmentToken: Option.none()
      }).pipe(Effect.provide(http))
      const registration = yield* client.registerNeuron(
        new RegisterNeuronRequest({
          organization_npi: npi(800 + i),
          organization_name: `Bench ${i}`,
          organization_type: "practice",
          neuron_endpoint_url: `https://bench-${i}.example`
        })
      )
      const beat = client.updateEndpoint(registration, `https://bench-${i}.example`).pipe(inMode(mode, otlp))
      return { mode, beat }
    }))

  // Handshake: a whole Neuron per mode, built in that mode (its server's fibers inherit the tracer).
  const neurons = yield* Effect.forEach(MODES, (mode, i) =>
    Effect.gen(function*() {
      const settings = {
        ...defaults(),
        organization: Option.some({ npi: npi(900 + i), name: `Bench Neuron ${i}` }),
        dataDir: Path.join(dir, `neuron-${i}`),
        registryUrls: [registryUrl],
        publicUrl: `https://bench-neuron-${i}.example`
      }
      const context = yield* Layer.build(
        Neuron.layer.pipe(
          Layer.provideMerge(NodeServer.layer({ host: "127.0.0.1", port: 0 })),
          Layer.provide([Neuron.layerSqlite, NodeHttpClient.layerUndici]),
          Layer.provide(NeuronConfig.layer(settings)),
          Layer.provide(NodeContext.layer)
        )
      ).pipe(inMode(mode, otlp))
      const neuron = Context.get(context, Neuron.Neuron)
      const provider = npi(950 + i)
      yield* neuron.addProvider({ provider_npi: provider })
      return { mode, url: NodeServer.urlOf(Context.get(context, HttpServer.HttpServer)), provider }
    }))
  const keys = yield* Effect.forEach(Array.from({ length: 64 }), () => makePatientKey)

  const heartbeatRates: Record<string, Array<number>> = {}
  const handshakeRates: Record<string, Array<number>> = {}
  const heartbeatCpu: Record<string, Array<number>> = {}
  const handshakeCpu: Record<string, Array<number>> = {}
  const cpuMicros = () => {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  let serial = 0
  for (let round = 0; round < ROUNDS + 1; round++) {
    // Rotate the order each round: no mode always runs first (or right after the same other one).
    const order = MODES.map((_, k) => MODES[(k + round) % MODES.length]!)
    for (const mode of order) {
      const beater = beaters.find((b) => b.mode === mode)!
      const start = performance.now()
      const cpu = cpuMicros()
      for (let n = 0; n < HEARTBEATS; n++) yield* beater.beat
      const perSecond = HEARTBEATS / ((performance.now() - start) / 1000)
      if (round > 0) { // round 0 warms up
        ;(heartbeatRates[mode] ??= []).push(perSecond)
        ;(heartbeatCpu[mode] ??= []).push((cpuMicros() - cpu) / HEARTBEATS)
      }

      const target = neurons.find((t) => t.mode === mode)!
      const began = performance.now()
      const cpuBefore = cpuMicros()
      yield* Effect.forEach(Array.from({ length: HANDSHAKES }), () => {
        const id = serial++
        return handshake({
          url: handshakeUrl(target.url),
          key: keys[id % keys.length]!,
          patient_agent_id: `bench-patient-${id}`,
          provider_npi: target.provider,
          consented_actions: ["read:records"],
          patient_endpoint: "https://patient.example/agent"
        }).pipe(Effect.withTracerEnabled(false))
      }, { concurrency: 8, discard: true })
      const handshakesPerSecond = HANDSHAKES / ((performance.now() - began) / 1000)
      if (round > 0) {
        ;(handshakeRates[mode] ??= []).push(handshakesPerSecond)
        ;(handshakeCpu[mode] ??= []).push((cpuMicros() - cpuBefore) / HANDSHAKES)
      }
    }
  }

  const report = (what: string, rates: Record<string, Array<number>>, cpu: Record<string, Array<number>>) => {
    const baseRate = median(rates["spans off"]!)
    const baseCpu = median(cpu["spans off"]!)
    console.log(`\n${what}: median of ${ROUNDS} rounds; difference against "spans off" (+: costs more)`)
    for (const mode of MODES) {
      const r = median(rates[mode]!)
      const c = median(cpu[mode]!)
      const pct = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)} %`
      console.log(
        `  ${mode.padEnd(12)} CPU ${c.toFixed(0).padStart(6)} µs/op (${pct(((c - baseCpu) / baseCpu) * 100)})   rate ${
          r.toFixed(0).padStart(5)
        }/s (${pct(((baseRate - r) / baseRate) * 100)})   CPU by round: ${
          cpu[mode]!.map((x) => x.toFixed(0)).join(" ")
        }`
      )
    }
  }
  console.log(`tracing cost, ${HEARTBEATS} heartbeats and ${HANDSHAKES} handshakes a round, data on ${dir}`)
  report("Heartbeat calls (AxonClient.updateEndpoint, sequential)", heartbeatRates, heartbeatCpu)
  report("Handshakes (complete, 8 concurrent)", handshakeRates, handshakeCpu)
})

await Effect.runPromise(
  program.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), Effect.provide(Logger.pretty))
)
