/**
 * The registration engine on simulated time, for the tests about timing: `RegistrationService` and both heartbeat
 * loops on the in-memory registry (`AxonClient.layerMemory`), the in-memory store, and the real health file in a
 * temporary folder, under the test's `TestClock`. Every registry call is recorded with the instant it was made.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { AxonClient, type AxonClientService } from "../../src/axon/AxonClient.js"
import type { AxonOperation } from "../../src/axon/AxonError.js"
import { AxonMemory, type AxonMemoryOptions } from "../../src/axon/AxonFakes.js"
import { NeuronHealth } from "../../src/health/NeuronHealth.js"
import * as Heartbeat from "../../src/heartbeat/Heartbeat.js"
import { type NeuronIdentity, RegistrationService } from "../../src/registration/RegistrationService.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"
import { CLINIC, realSleep } from "../support/neuron.js"

/** One registry call: what, when (the Clock's instant when it was made), and whether it succeeded. */
export interface TimedCall {
  readonly operation: AxonOperation
  readonly at: number
  readonly ok: boolean
}

/** The clinic as the engine announces it. */
export const identity: NeuronIdentity = {
  organization_npi: CLINIC.npi,
  organization_name: CLINIC.name,
  organization_type: "practice",
  endpoint_url: "https://neuron.riverside.test",
  heartbeat_interval_s: 60
}

/** The client with every call recorded in `log`; the first call of each `dieOnce` operation dies (a defect). */
const recording = (
  inner: AxonClientService,
  log: Array<TimedCall>,
  dieOnce: ReadonlyArray<AxonOperation>
): AxonClientService => {
  const died = new Set<AxonOperation>()
  const timed = <A, E>(operation: AxonOperation, effect: Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      const defect = dieOnce.includes(operation) && !died.has(operation)
      died.add(operation)
      const exit = yield* Effect.exit(defect ? Effect.dieMessage(`injected defect in ${operation}`) : effect)
      log.push({ operation, at, ok: Exit.isSuccess(exit) })
      return yield* exit
    })
  return {
    registerNeuron: (r) => timed("register", inner.registerNeuron(r)),
    updateEndpoint: (ref, url) => timed("heartbeat", inner.updateEndpoint(ref, url)),
    registerProvider: (ref, p) => timed("provider_add", inner.registerProvider(ref, p)),
    removeProvider: (ref, npi) => timed("provider_remove", inner.removeProvider(ref, npi)),
    listProviders: (ref) => timed("provider_list", inner.listProviders(ref)),
    deregister: (ref) => timed("deregister", inner.deregister(ref)),
    currentUrl: inner.currentUrl
  }
}

/** Timing of the engine under test (the Neuron's defaults unless given). */
export interface EngineOptions {
  readonly interval?: Duration.DurationInput
  readonly backoffBase?: Duration.DurationInput
  readonly backoffCeiling?: Duration.DurationInput
  readonly memory?: AxonMemoryOptions
  /** The first call of each of these operations dies, as an unexpected error (a database fault, a bug) would. */
  readonly dieOnce?: ReadonlyArray<AxonOperation>
  /** Runs on the in-memory registry before the engine starts (e.g. another client registering the NPI). */
  readonly before?: (client: AxonClientService) => Effect.Effect<unknown, unknown>
}

/** Starts the engine (both loops) for the length of the current scope. */
export const startEngine = (options: EngineOptions = {}) =>
  Effect.gen(function*() {
    const dataDir = yield* Sqlite.makeTempDir("neuron-")
    const memoryContext = yield* Layer.build(AxonClient.layerMemory(options.memory))
    const inner = Context.get(memoryContext, AxonClient)
    if (options.before !== undefined) yield* Effect.orDie(options.before(inner))
    const calls: Array<TimedCall> = []
    const context = yield* Layer.build(
      Heartbeat.layer({
        interval: options.interval ?? "60 seconds",
        backoffBase: options.backoffBase ?? "5 seconds",
        backoffCeiling: options.backoffCeiling ?? "240 seconds"
      }).pipe(
        Layer.provideMerge(RegistrationService.layer(identity)),
        Layer.provideMerge(
          Layer.mergeAll(
            RegistrationStore.layerMemory,
            NeuronHealth.layer({ dataDir }),
            Layer.succeed(AxonClient, recording(inner, calls, options.dieOnce ?? []))
          )
        ),
        Layer.provide(NodeContext.layer)
      )
    ).pipe(Effect.orDie)
    return {
      dataDir,
      memory: Context.get(memoryContext, AxonMemory),
      /** Every registry call so far. */
      calls: (operation?: AxonOperation) => calls.filter((c) => operation === undefined || c.operation === operation),
      registration: Context.get(context, RegistrationService),
      health: Context.get(context, NeuronHealth),
      store: Context.get(context, RegistrationStore),
      audit: Context.get(context, AuditLog)
    }
  })

/** A running engine. */
export type Engine = Effect.Effect.Success<ReturnType<typeof startEngine>>

/** The engine's first beat (at time 0) has registered it and made it healthy. */
export const registered = (engine: Engine) =>
  settle(
    "the first beat",
    Effect.map(
      engine.health.get,
      (h) => (h.status === "healthy" && h.next_attempt_at !== null ? Option.some(h) : Option.none())
    )
  )

/** No log lines: for tests whose injected failures would fill the output with warnings they are not about. */
export const quiet = Logger.replace(Logger.defaultLogger, Logger.none)

/** Polls `check` (a few microtask turns, then 1 ms of real time) until it holds; dies after 2 000 tries. */
export const settle = <A>(what: string, check: Effect.Effect<Option.Option<A>>): Effect.Effect<A> =>
  Effect.gen(function*() {
    for (let i = 0; i < 2_000; i++) {
      const result = yield* check
      if (Option.isSome(result)) return result.value
      yield* i < 5 ? Effect.yieldNow() : realSleep(1)
    }
    return yield* Effect.dieMessage(`never settled: ${what}`)
  })

/** What the health snapshot announced and when the heartbeat really sleeps until. */
export interface Planned {
  /** `next_attempt_at` (ms), as the health file says it (ISO: whole milliseconds). */
  readonly announced: number
  /** The instant the heartbeat's sleep ends (the schedule's jitter makes it fractional). */
  readonly wake: number
}

/** The heartbeat's plan once it sleeps past `after`: the announced `next_attempt_at` and its sleep's end. */
const planAfter = (engine: Engine, after: number) =>
  settle(
    "the heartbeat to sleep until the announced next_attempt_at",
    Effect.gen(function*() {
      const next = (yield* engine.health.get).next_attempt_at
      if (next === null) return Option.none<Planned>()
      const announced = Date.parse(next)
      const wake = Chunk.findFirst(yield* TestClock.sleeps(), (w) => w > after && w >= announced && w < announced + 1)
      return Option.map(wake, (w) => ({ announced, wake: w }))
    })
  )

/**
 * Waits until the heartbeat sleeps until the instant that `next_attempt_at` announces (within its millisecond),
 * moves the clock there, and waits until the attempt (`operation`) is made and the next one planned (health
 * updated). Returns the plan it followed.
 */
export const runNextAttempt = (engine: Engine, operation: AxonOperation = "heartbeat") =>
  Effect.gen(function*() {
    const planned = yield* planAfter(engine, yield* Clock.currentTimeMillis)
    const before = engine.calls(operation).length
    yield* TestClock.setTime(planned.wake)
    yield* planAfter(engine, planned.wake)
    if (engine.calls(operation).length <= before) {
      return yield* Effect.dieMessage(`no ${operation} attempt at the announced instant`)
    }
    return planned
  }) as Effect.Effect<Planned, never, Scope.Scope>
