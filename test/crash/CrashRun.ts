/**
 * One seeded crash run, shared by the suite (`test/crash/Crash.test.ts`) and `pnpm test:crash` (`test/crash/main.ts`):
 * the Neuron built as it runs in production (`node dist/main.js`, a child process) against the project's real
 * registry (in this process), killed with SIGKILL at seeded random moments (start-up and registration, provider adds
 * and removes, handshakes in flight) and restarted on the same data folder.
 *
 * After each kill: `PRAGMA integrity_check` is ok, the audit chain verifies, and the event and audit tables hold every
 * row they held before (each earlier snapshot is a prefix of the later one). After each restart: healthy again; one
 * registration, whose id never changed, at the Neuron and at the registry; every acknowledged operation (an admin
 * answer 200/201/202/204, a `handshake.complete`, received before the kill) present locally and, within 5 s of the
 * Neuron being healthy, at the registry.
 *
 * The seed decides everything the run chooses (enrollment, which moment to kill at, the operations and their order,
 * the patients' keys): `pnpm test:crash --runs 1 --seed S` replays run S's script. The machine's timing still
 * varies, so a replay kills at the same moments of the script, not necessarily in the same instruction.
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { handshake, handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { patientKeyFromSeed } from "../../src/careagent/CareAgentKeys.js"
import type { Npi } from "../../src/domain/Npi.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { type Answer, call, freePort, npiOf } from "../support/http.js"
import { CLINIC, realSleep, waitFor } from "../support/neuron.js"
import { type Child, healthy, spawnMain } from "../support/process.js"
import { startRegistry } from "../support/registry.js"

/** How one run goes. */
export interface CrashRunOptions {
  readonly seed: number
  /** How many times the Neuron is killed (then restarted once more, and stopped cleanly). Default 3. */
  readonly kills?: number
  /** Where progress lines go (none by default). */
  readonly log?: (line: string) => void
}

/** What a run did, for the summary line. */
export interface CrashRunSummary {
  readonly seed: number
  readonly enrollment: boolean
  /** The moment of each kill: `start-up after N ms` or `operations after N ms`. */
  readonly kills: ReadonlyArray<string>
  readonly acknowledged: { readonly providers: number; readonly handshakes: number }
  readonly notes: ReadonlyArray<string>
}

/** Odd seeds run against a registry with enrollment (half the runs of any consecutive range). */
export const enrollmentOf = (seed: number): boolean => seed % 2 !== 0

/** The command that replays one run. */
export const replayCommand = (seed: number): string => `pnpm test:crash --runs 1 --seed ${seed}`

/** A seed for a fresh series (printed, so the series can be replayed). */
export const freshSeed = (): number => Math.floor(Math.random() * 1_000_000_000)

// Test-only secret for the registry's enrollment.
const ENROLLMENT_TOKEN = "crash-test-enrollment-token-0123456789"
const PROVIDERS: ReadonlyArray<Npi> = Array.from({ length: 6 }, (_, i) => npiOf(300 + i))
// A heartbeat interval whose TTL (3 intervals, 30 s) outlasts a restart on a busy machine (13 s seen with a load
// average of 17 on 2 cores), so the registry does not deregister the Neuron between a kill and its restart.
const HEARTBEAT_MS = 10_000
// Healthy again: at once, except after a kill between a development registry's accepting the registration and the
// Neuron's storing it: that registration has no token the Neuron knows, the registry answers 409 (`conflict`) until
// its TTL expires it, and the Neuron then registers (PROTOCOL.md section 1; docs/architecture.md, crash recovery).
const HEALTHY_WITHIN_MS = 3 * HEARTBEAT_MS + 30_000
const REGISTRY_WITHIN_MS = 5_000

type Expectation = "present" | "absent" | "unknown"

interface Relationship {
  readonly relationship_id: string
  readonly patient_agent_id: string
  readonly provider_npi: Npi
  readonly keySeed: Uint8Array
}

/** What the test knows: what was acknowledged, and the rows seen so far. */
interface Knowledge {
  registrationId: string | undefined
  readonly providers: Map<Npi, Expectation>
  readonly relationships: Array<Relationship>
  events: ReadonlyArray<string>
  audit: ReadonlyArray<string>
  readonly failures: Array<string>
  /** How many provider operations were acknowledged. */
  acknowledged: number
  /** What happened that is right but worth saying (printed with the summary). */
  readonly notes: Array<string>
}

/** The Neuron's database as the crash left it (opened without migrating: nothing is changed but WAL recovery). */
const inspectDatabase = (dataDir: string) =>
  Effect.gen(function*() {
    const filename = Path.join(dataDir, "neuron.db")
    if (!Fs.existsSync(filename)) return Option.none()
    const context = yield* Layer.build(SqliteClient.layer({ filename }))
    const sql = Context.get(context, SqlClient.SqlClient)
    const integrity = (yield* sql<{ integrity_check: string }>`PRAGMA integrity_check`).map((r) => r.integrity_check)
    const tables = new Set(
      (yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`).map((r) => r.name)
    )
    // Killed before its migrations committed (they run in one transaction): an empty database, nothing to check.
    if (!tables.has("audit_log")) return Option.some({ integrity, events: [], audit: [], verified: true, bearer: null })
    const events = (yield* sql<{ seq: number; stream: string; version: number; type: string; payload: string }>`
      SELECT seq, stream, version, type, payload FROM lifecycle_events ORDER BY seq`).map((r) => JSON.stringify(r))
    const audit = (yield* sql<{ seq: number; hash: string }>`SELECT seq, hash FROM audit_log ORDER BY seq`)
      .map((r) => `${r.seq} ${r.hash}`)
    const verification = yield* Effect.provide(
      Effect.flatMap(AuditLog, (log) => log.verify()),
      AuditLog.Default.pipe(Layer.provide(Layer.succeedContext(context)))
    )
    const [row] = yield* sql<{ bearer_token: string | null }>`SELECT bearer_token FROM registration`
    return Option.some({
      integrity,
      events,
      audit,
      verified: verification.ok ? true : `${verification.brokenAt}: ${verification.reason}`,
      bearer: row?.bearer_token ?? null
    })
  }).pipe(Effect.scoped, Effect.orDie)

/** `earlier` is a prefix of `later`: no row lost or changed. */
const isPrefix = (earlier: ReadonlyArray<string>, later: ReadonlyArray<string>) =>
  earlier.length <= later.length && earlier.every((row, i) => later[i] === row)

/** A call that may meet a killed process: `None` when no answer arrived. */
const attempt = (url: string, method: string, path: string, body?: unknown): Effect.Effect<Option.Option<Answer>> =>
  call(url, method, path, body === undefined ? undefined : { body }).pipe(
    Effect.timeout("10 seconds"),
    Effect.map(Option.some),
    Effect.catchAllDefect(() => Effect.succeedNone),
    Effect.catchTag("TimeoutException", () => Effect.succeedNone)
  )

/** Checks the database after a kill and records its rows; a problem is added to `failures`. */
const checkAfterKill = (dataDir: string, known: Knowledge, when: string) =>
  Effect.gen(function*() {
    const found = yield* inspectDatabase(dataDir)
    if (Option.isNone(found)) return
    const db = found.value
    if (db.integrity.join(",") !== "ok") known.failures.push(`${when}: integrity_check says ${db.integrity.join("; ")}`)
    if (db.verified !== true) known.failures.push(`${when}: the audit chain does not verify (${db.verified})`)
    if (!isPrefix(known.events, db.events)) known.failures.push(`${when}: lifecycle_events lost or changed a row`)
    if (!isPrefix(known.audit, db.audit)) known.failures.push(`${when}: audit_log lost or changed a row`)
    known.events = db.events
    known.audit = db.audit
  })

/** One provider add or removal; records it when acknowledged. `false` when it got no answer or a wrong one. */
const providerOperation = (url: string, known: Knowledge, npi: Npi, remove: boolean) =>
  Effect.gen(function*() {
    known.providers.set(npi, "unknown")
    const answer = remove
      ? yield* attempt(url, "DELETE", `/v1/providers/${npi}`)
      : yield* attempt(url, "POST", "/v1/providers", {
        provider_npi: npi,
        provider_name: `Dr. Crash ${npi.slice(-4)}`,
        provider_types: ["physician"]
      })
    if (Option.isNone(answer)) return false // the process is gone: this one stays unknown
    const status = answer.value.status
    if (remove && (status === 204 || status === 202 || status === 404)) known.providers.set(npi, "absent")
    else if (!remove && (status === 201 || status === 202)) known.providers.set(npi, "present")
    else {
      known.failures.push(`${remove ? "DELETE" : "POST"} provider ${npi} answered ${status}: ${answer.value.text}`)
      return false
    }
    known.acknowledged++
    return true
  })

/** Sends random provider adds and removes, one at a time, recording each acknowledged one, until `stopped`. */
const providerOperations = (url: string, rng: Random.Random, known: Knowledge, stopped: () => boolean) =>
  Effect.gen(function*() {
    while (!stopped()) {
      const npi = PROVIDERS[yield* rng.nextIntBetween(0, PROVIDERS.length)]!
      const remove = (known.providers.get(npi) ?? "absent") !== "absent" && (yield* rng.nextBoolean)
      if (!(yield* providerOperation(url, known, npi, remove))) return
    }
  })

/** A patient's handshake with the Neuron at `url` (its key made from `keySeed`). */
const patientHandshake = (url: string, keySeed: Uint8Array, patient_agent_id: string, provider_npi: Npi) =>
  Effect.either(handshake({
    url: handshakeUrl(url),
    key: patientKeyFromSeed(keySeed),
    patient_agent_id,
    provider_npi,
    consented_actions: ["read_records"],
    organization_npi: CLINIC.npi,
    patient_endpoint: `https://${patient_agent_id}.patients.test`,
    timeout: "5 seconds"
  }))

/** One new patient's handshake with a provider known present; recorded when completed. `None` when none is present. */
const newPatient = (url: string, rng: Random.Random, known: Knowledge, patient_agent_id: string) =>
  Effect.gen(function*() {
    const present = PROVIDERS.filter((npi) => known.providers.get(npi) === "present")
    const keySeed = new Uint8Array(32)
    for (let b = 0; b < 32; b++) keySeed[b] = yield* rng.nextIntBetween(0, 256)
    if (present.length === 0) return Option.none()
    const provider_npi = present[yield* rng.nextIntBetween(0, present.length)]!
    const result = yield* patientHandshake(url, keySeed, patient_agent_id, provider_npi)
    // A refusal (the provider removed meanwhile) or a socket closed by the kill is not acknowledged.
    if (Either.isRight(result)) {
      known.relationships.push({
        relationship_id: result.right.relationship_id,
        patient_agent_id,
        provider_npi,
        keySeed
      })
    }
    return Option.some(result)
  })

/** Runs handshakes with providers known present, recording each completed one, until `stopped`. */
const handshakes = (url: string, rng: Random.Random, known: Knowledge, stopped: () => boolean, tag: string) =>
  Effect.gen(function*() {
    for (let i = 0; !stopped(); i++) {
      if (Option.isNone(yield* newPatient(url, rng, known, `patient-${tag}-${i}`))) yield* realSleep(20)
    }
  })

/**
 * Before a burst of operations: at least one provider present and one completed handshake, both acknowledged, so
 * that every run has a relationship that the kills that follow must not lose.
 */
const warmUp = (url: string, rng: Random.Random, known: Knowledge, tag: string) =>
  Effect.gen(function*() {
    if (!PROVIDERS.some((npi) => known.providers.get(npi) === "present")) {
      const absent = PROVIDERS.filter((npi) => known.providers.get(npi) !== "present")
      const npi = absent[yield* rng.nextIntBetween(0, absent.length)]!
      if (!(yield* providerOperation(url, known, npi, false))) return
    }
    const result = yield* newPatient(url, rng, known, `patient-${tag}-first`)
    if (Option.isSome(result) && Either.isLeft(result.value)) {
      known.failures.push(`${tag}: a handshake with a healthy Neuron failed: ${result.value.left.message}`)
    }
  })

/** After a restart: healthy, the same registration, every acknowledged operation locally and at the registry. */
const verifyRestarted = (url: string, registryUrl: string, dataDir: string, known: Knowledge, when: string) =>
  Effect.gen(function*() {
    yield* healthy(url, HEALTHY_WITHIN_MS)
    const status = (yield* call(url, "GET", "/v1/status")).body
    const id = status.registration_id as string | null
    if (id === null || status.registration !== "registered") {
      return known.failures.push(`${when}: healthy but not registered (${status.registration})`)
    }
    if (known.registrationId !== undefined && id !== known.registrationId) {
      // A new registration is right only when the registry had ended the old one (its TTL, on a machine so slow
      // that a restart outlasted 3 intervals); the alert says so.
      const alerts = (yield* call(registryUrl, "GET", "/alerts")).body.alerts as ReadonlyArray<any>
      const expired = alerts.some((a) =>
        a.alert_type === "neuron_deregistered" && a.registration_id === known.registrationId
      )
      if (!expired) known.failures.push(`${when}: the registration id changed from ${known.registrationId} to ${id}`)
      else known.notes.push(`${when}: the registry's TTL ended the registration during the restart; registered again`)
    }
    known.registrationId = id
    const live = (yield* call(registryUrl, "GET", `/v1/neurons?organization_npi=${CLINIC.npi}`)).body.neurons
      .map((n: any) => n.registration_id)
    if (JSON.stringify(live) !== JSON.stringify([id])) {
      known.failures.push(`${when}: the registry's live registrations are ${JSON.stringify(live)}, not [${id}]`)
    }

    // Every acknowledged provider operation: locally settled and at the registry, within 5 s.
    let last = ""
    const converged = yield* waitFor(
      "the registry to hold every acknowledged provider operation",
      Effect.gen(function*() {
        const local = (yield* call(url, "GET", "/v1/providers")).body.providers as ReadonlyArray<any>
        const bearer = Option.flatMap(yield* inspectDatabase(dataDir), (db) => Option.fromNullable(db.bearer))
        if (Option.isNone(bearer)) return Option.none()
        const remote = (yield* call(registryUrl, "GET", `/v1/neurons/${id}/providers`, { token: bearer.value })).body
        const here = local.filter((p) => p.status !== "removing").map((p) => p.provider_npi as string).sort()
        const there = ((remote?.providers ?? []) as ReadonlyArray<any>).map((p) => p.provider_npi as string).sort()
        last = `local ${JSON.stringify(local.map((p) => `${p.provider_npi}:${p.status}`))}, registry ${
          JSON.stringify(there)
        }`
        const settled = local.every((p) => p.status === "registered")
        const expected = PROVIDERS.every((npi) => {
          const e = known.providers.get(npi) ?? "absent"
          return e === "unknown" || (e === "present") === here.includes(npi)
        })
        return settled && expected && JSON.stringify(here) === JSON.stringify(there) ? Option.some(here) : Option.none()
      }),
      REGISTRY_WITHIN_MS
    ).pipe(Effect.map(Option.some), Effect.catchAllDefect(() => Effect.succeedNone))
    if (Option.isNone(converged)) {
      const expected = PROVIDERS.map((npi) => `${npi}:${known.providers.get(npi) ?? "absent"}`).join(" ")
      return known.failures.push(
        `${when}: not every acknowledged provider operation reached the registry within 5 s (expected ${expected}; ${last})`
      )
    }
    const here = converged.value
    for (const npi of PROVIDERS) known.providers.set(npi, here.includes(npi) ? "present" : "absent")

    // Every completed handshake: its relationship is stored, and the same patient gets it back (`existing`).
    const stored = (yield* call(url, "GET", "/v1/relationships")).body.relationships as ReadonlyArray<any>
    const ids = new Set(stored.map((r) => r.relationship_id as string))
    const missing = known.relationships.filter((r) => !ids.has(r.relationship_id)).map((r) => r.relationship_id)
    if (missing.length > 0) known.failures.push(`${when}: acknowledged relationships missing: ${missing.join(", ")}`)
    const again = [...known.relationships].reverse().find((r) => known.providers.get(r.provider_npi) === "present")
    if (again !== undefined) {
      const repeat = yield* patientHandshake(url, again.keySeed, again.patient_agent_id, again.provider_npi)
      if (
        Either.isLeft(repeat) || repeat.right.status !== "existing" ||
        repeat.right.relationship_id !== again.relationship_id
      ) {
        known.failures.push(
          `${when}: the same patient's handshake did not return relationship ${again.relationship_id}`
        )
      }
    }
    yield* checkAfterKill(dataDir, known, `${when} (running)`)
  })

/**
 * One crash run (see the module's comment). Fails (a defect) with every problem found and the replay command.
 */
export const crashRun = (options: CrashRunOptions) =>
  Effect.gen(function*() {
    const { seed } = options
    const kills = options.kills ?? 3
    const log = options.log ?? (() => {})
    const rng = Random.make(seed)
    const enrollment = enrollmentOf(seed)
    const registry = yield* startRegistry(enrollment ? { enrollmentToken: ENROLLMENT_TOKEN } : undefined)
    const dataDir = yield* Sqlite.makeTempDir("neuron-crash-")
    const known: Knowledge = {
      registrationId: undefined,
      providers: new Map(),
      relationships: [],
      events: [],
      audit: [],
      failures: [],
      acknowledged: 0,
      notes: []
    }
    const moments: Array<string> = []
    let outputs = ""
    let hadOperations = false
    for (let cycle = 0; cycle <= kills && known.failures.length === 0; cycle++) {
      const port = yield* freePort
      const url = `http://127.0.0.1:${port}`
      const run = Effect.gen(function*() {
        const child: Child = yield* spawnMain({
          NEURON_DATA_DIR: dataDir,
          NEURON_PORT: String(port),
          AXON_REGISTRY_URL: registry.url,
          NEURON_ORGANIZATION_NPI: CLINIC.npi,
          NEURON_ORGANIZATION_NAME: CLINIC.name,
          NEURON_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
          NEURON_BACKOFF_BASE_MS: "200",
          NEURON_BACKOFF_CEILING_MS: "1000",
          NEURON_LOG_FORMAT: "logfmt",
          ...(enrollment ? { AXON_ENROLLMENT_TOKEN: ENROLLMENT_TOKEN } : {})
        })
        const when = `start ${cycle + 1}`
        const final = cycle === kills
        // The last kill lands in operations when none did yet: every run acknowledges something to keep.
        const startUp = !final && (yield* rng.nextRange(0, 1)) < 0.35 && (hadOperations || cycle < kills - 1)
        hadOperations ||= !startUp
        const delay = yield* rng.nextIntBetween(startUp ? 0 : 50, startUp ? 1_500 : 1_200)
        if (!startUp) {
          yield* verifyRestarted(url, registry.url, dataDir, known, when)
          if (final || known.failures.length > 0) {
            yield* child.signal("SIGTERM")
            const code = yield* child.exit
            if (code !== 0) known.failures.push(`${when}: the clean stop exited with ${code}`)
            return child
          }
        }
        if (!startUp) yield* warmUp(url, Random.make(`${seed}/${cycle}/warm-up`), known, `${seed}-${cycle}`)
        let stopped = false
        const operations = startUp ? [] : [
          yield* Effect.fork(
            providerOperations(url, Random.make(`${seed}/${cycle}/providers`), known, () => stopped)
          ),
          yield* Effect.fork(
            handshakes(url, Random.make(`${seed}/${cycle}/handshakes`), known, () => stopped, `${seed}-${cycle}`)
          )
        ]
        yield* realSleep(delay)
        const moment = `${startUp ? "start-up" : "operations"} after ${delay} ms`
        moments.push(moment)
        log(`  seed ${seed}: kill ${cycle + 1} of ${kills} (SIGKILL) at ${moment}`)
        yield* child.signal("SIGKILL")
        yield* child.exit
        stopped = true
        // The calls in flight end on the dead socket; what was answered before the kill is recorded.
        yield* Fiber.joinAll(operations).pipe(Effect.timeout("15 seconds"), Effect.orDie)
        yield* checkAfterKill(dataDir, known, `after kill ${cycle + 1} (${moment})`)
        return child
      })
      const child = yield* Effect.scoped(run)
      const { stderr, stdout } = child.output()
      outputs += `--- start ${cycle + 1} ---\n${stdout}${stderr}`
    }
    const acknowledged = { providers: known.acknowledged, handshakes: known.relationships.length }
    if (known.failures.length > 0) {
      const tail = outputs.split("\n").slice(-40).join("\n")
      return yield* Effect.dieMessage(
        `crash run seed ${seed} (${enrollment ? "with" : "without"} enrollment) failed:\n  ${
          known.failures.join("\n  ")
        }\nkills: ${moments.join("; ")}\nreplay: ${replayCommand(seed)}\nthe Neuron's last output:\n${tail}`
      )
    }
    return { seed, enrollment, kills: moments, acknowledged, notes: known.notes } satisfies CrashRunSummary
  }).pipe(Effect.scoped)
