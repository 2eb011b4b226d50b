/**
 * A real Neuron talking to a real registry through fault-injecting proxies (test/support/FaultProxy.ts), with its
 * log lines captured, and the checks every fault test makes: the health file as the contract says it, no error
 * logged, the registration kept, and a stop that completes with the health file saying `stopped`.
 */
import { assert } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { HealthSnapshot } from "../../src/health/NeuronHealth.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { type FaultProxy, startFaultProxy } from "../support/FaultProxy.js"
import {
  call,
  captureLogs,
  childScope,
  readHealthFile,
  readRecords,
  realSleep,
  type RunningNeuron,
  startNeuron,
  type TestOverrides,
  waitFor
} from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

/**
 * Short times so that a fault shows within a few seconds; the registry's TTL (3 × 2 s) outlasts every fault. The
 * time-out leaves room for a registry slowed by a busy disk (its writes fsync).
 */
export const FAST = {
  heartbeatInterval: "2 seconds",
  backoffBase: "50 millis",
  backoffCeiling: "300 millis",
  axonTimeout: "600 millis"
} as const satisfies TestOverrides

/** A Neuron behind proxies, its log lines, and the scope that stops it. */
export interface Rig {
  readonly neuron: RunningNeuron
  readonly proxies: ReadonlyArray<FaultProxy>
  readonly lines: () => ReadonlyArray<string>
  readonly scope: Scope.CloseableScope
}

/** Starts `count` proxies to `registryUrl` and a Neuron given them, in order, as its registry URLs. */
export const startRig = (
  registryUrl: string,
  options?: { readonly count?: number; readonly overrides?: TestOverrides }
) =>
  Effect.gen(function*() {
    const proxies: Array<FaultProxy> = []
    for (let i = 0; i < (options?.count ?? 1); i++) proxies.push(yield* startFaultProxy(registryUrl))
    const logs = captureLogs()
    // The data folder outlives the Neuron's own scope: the test reads the health file after the stop.
    const dataDir = yield* Sqlite.makeTempDir("neuron-")
    const scope = yield* childScope
    const neuron = yield* startNeuron({
      registryUrls: proxies.map((p) => p.url),
      dataDir,
      overrides: { ...FAST, ...options?.overrides }
    }).pipe(
      Scope.extend(scope),
      Effect.provide(Logger.replace(Logger.defaultLogger, logs.logger)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
    return { neuron, proxies, lines: logs.lines, scope } satisfies Rig
  })

const decodeHealth = Schema.decodeUnknownSync(HealthSnapshot)

/** The health file, checked against the contract's schema (exactly its fields). */
export const healthFile = (rig: Rig) => Effect.map(readHealthFile(rig.neuron.dataDir), (h) => decodeHealth(h))

/** Waits until the health file satisfies `check`, and gives it. */
export const waitForHealth = (rig: Rig, what: string, check: (h: HealthSnapshot) => boolean) =>
  waitFor(what, Effect.map(healthFile(rig), (h) => (check(h) ? Option.some(h) : Option.none())), 15_000)

/** Healthy, with a heartbeat after `since` (ISO) when given. */
export const waitHealthy = (rig: Rig, since?: string) =>
  waitForHealth(rig, "healthy again", (h) =>
    h.status === "healthy" && h.consecutive_failures === 0 &&
    (since === undefined || (h.last_heartbeat_at !== null && h.last_heartbeat_at > since)))

/** The registration id the Neuron shows on `/v1/status`. */
export const registrationId = (rig: Rig) =>
  Effect.map(call(rig.neuron.url, "GET", "/v1/status"), (a) => a.body.registration_id as string)

/** No line at level ERROR or FATAL: every fault is expected, none is a defect. */
export const assertNothingUnexpected = (rig: Rig) => {
  const bad = rig.lines().filter((l) => /level=(ERROR|FATAL)/.test(l) || l.includes("unexpectedly"))
  assert.deepStrictEqual(bad, [], "no error or defect is logged")
}

/** The `reason` annotations of the "heartbeat failed" warnings, from the `from`-th log line on. */
export const heartbeatFailures = (rig: Rig, from = 0): ReadonlyArray<string> =>
  rig.lines().slice(from).filter((l) => l.includes("heartbeat failed")).map((l) => /reason=(\w+)/.exec(l)?.[1] ?? "?")

/** The event log kept the one registration: nothing lost, the audit chain sound. */
export const assertRegistrationKept = (rig: Rig, id: string) =>
  Effect.gen(function*() {
    const records = yield* readRecords(rig.neuron.dataDir)
    assert.notInclude(records.events, "RegistrationLost", "a fault other than 401/404 never loses the registration")
    assert.strictEqual(records.events.filter((e) => e === "Registered").length, 1)
    assert.strictEqual(records.registration.registration_id, id)
    assert.isTrue(records.verification.ok)
  })

/**
 * Stops the Neuron (as SIGTERM would) and checks that it stops: the close completes (bounded), the health file says
 * `stopped`, and no registry call is made afterwards (no fiber left running).
 */
export const stopCleanly = (rig: Rig) =>
  Effect.gen(function*() {
    yield* Scope.close(rig.scope, Exit.void).pipe(
      Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => "the Neuron did not stop" }),
      Effect.orDieWith((e) => new Error(e))
    )
    assert.strictEqual((yield* healthFile(rig)).status, "stopped")
    // The close has waited for the loops' interruption; a loop that somehow went on would call within the backoff.
    const before = rig.proxies.map((p) => p.connections())
    yield* realSleep(2 * Duration.toMillis(FAST.backoffCeiling))
    assert.deepStrictEqual(rig.proxies.map((p) => p.connections()), before, "no registry call after the stop")
  })

/** A registry, `count` proxies to it and a healthy Neuron behind them, with its registration id. */
export const startHealthyRig = (
  options?: { readonly count?: number; readonly overrides?: TestOverrides; readonly enrollmentToken?: string }
) =>
  Effect.gen(function*() {
    const registry = yield* startRegistry(
      options?.enrollmentToken === undefined ? undefined : { enrollmentToken: options.enrollmentToken }
    )
    const rig = yield* startRig(registry.url, options)
    yield* waitHealthy(rig)
    return { rig, id: yield* registrationId(rig) }
  })

/** The end of every fault test: the registration kept, nothing logged as an error, a clean stop. */
export const finish = (rig: Rig, id: string) =>
  Effect.gen(function*() {
    assert.strictEqual(yield* registrationId(rig), id)
    yield* assertRegistrationKept(rig, id)
    assertNothingUnexpected(rig)
    yield* stopCleanly(rig)
  })
